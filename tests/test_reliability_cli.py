"""Fault cases through the CLI: exit code, one clear line, empty stdout, no traceback, and no file lost or
damaged (checkpoints hashed before and after).

Faults that other files check are only extended in this one: a process killed or a disk failing during a
save in test_crash_consistency.py, a second trainer and readers during a live run in test_reliability_locking.py,
resuming a finished run and SIGINT during training in test_train.py, prime, temperature and top-k usage
errors in test_cli_inference.py.
"""

import hashlib
import json
import os
import pickle
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.numpy
from helpers import CHARLM, assert_one_line_error, charlm_env, invoke

import charlm.tasks.lm.lm_task as train_module
from charlm.store.checkpoint import load_checkpoint, payload_digest

SMALL = ["--cell", "lstm", "--hidden", "16", "--layers", "1", "--batch", "4", "--seq-len", "16"]
ANSI = re.compile(r"\x1b[\[\]()]")


def digest(directory):
    """{name: sha256} of every file in a directory (lock file excluded), to prove nothing changed."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.is_file() and p.name != ".lock"}


def write_corpus(path, n_lines=200, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]
    path.write_text("\n".join(" ".join(rng.choice(words, size=8)) for _ in range(n_lines)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 12-step run directory with step checkpoints every 4 steps, and its corpus."""
    root = tmp_path_factory.mktemp("reliability")
    os.environ.setdefault("CHARLM_CACHE_DIR", str(root / "cache"))
    corpus = write_corpus(root / "corpus.txt")
    run = root / "run"
    result = invoke("train", corpus, "--out", run, *SMALL, "--steps", "12", "--save-every", "4", "-q")
    assert result.exit_code == 0, result.output
    return {"root": root, "corpus": corpus, "run": run, "ckpt": run / "ckpt-00000012.safetensors"}


@pytest.fixture
def run_copy(trained, tmp_path):
    """A private copy of the trained run directory (tests may damage it)."""
    out = tmp_path / "run"
    out.mkdir()
    for p in trained["run"].iterdir():
        if p.is_file():
            (out / p.name).write_bytes(p.read_bytes())
    return out


# ---------------------------------------------------------------------------------------- corpus, config


def test_corpus_missing_directory_or_unreadable_is_a_usage_error(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert_one_line_error(invoke("train", tmp_path / "none.txt", "--out", out, "--steps", 1), 2, "does not exist")
    assert_one_line_error(invoke("train", tmp_path, "--out", out, "--steps", 1), 2, "is a directory")
    locked = write_corpus(tmp_path / "locked.txt")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # running as root: permission bits do not stop reads, so deny like the kernel
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if str(p) == str(locked) and mode & os.R_OK
                            else real_access(p, mode, *a, **k))
    assert_one_line_error(invoke("train", locked, "--out", out, "--steps", 1), 2, "not readable")
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"  \n\t\n\r\n", b"\xef\xbb\xbf \n"])
def test_empty_corpus_fails_before_any_setup(tmp_path, content):
    corpus = tmp_path / "empty.txt"
    corpus.write_bytes(content)
    out = tmp_path / "run"
    assert_one_line_error(invoke("train", corpus, "--out", out, "--steps", 1), 1, "corpus is empty")
    assert not out.exists()  # no run directory, no lock file, no checkpoint left behind


@pytest.mark.parametrize("content, fragments", [
    (b"hello\x00world\n" * 50, ["binary", "NUL byte", "byte 5"]),
    (b"good text\nmore text\ncaf\xe9 au lait\n" * 50, ["not valid utf-8", "byte 23", "line 3", "\\xe9",
                                                       "--encoding"]),
    (b"abc\xff\xfedef", ["not valid utf-8", "byte 3", "\\xff", "--encoding"]),
])
def test_binary_or_undecodable_corpus_names_the_offset(tmp_path, content, fragments):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(content)
    out = tmp_path / "run"
    assert_one_line_error(invoke("train", corpus, "--out", out, "--steps", 1, *SMALL), 1, *fragments)
    assert not out.exists()


def test_bom_is_stripped_and_latin1_works_with_encoding(tmp_path):
    corpus = tmp_path / "bom.txt"
    corpus.write_bytes(b"\xef\xbb\xbf" + write_corpus(tmp_path / "plain.txt").read_bytes())
    result = invoke("train", corpus, "--out", tmp_path / "run", "--steps", 2, *SMALL, "-q")
    assert result.exit_code == 0, result.output
    assert "\ufeff" not in load_checkpoint(tmp_path / "run").vocab.chars
    latin = tmp_path / "latin.txt"
    latin.write_bytes(("caf\xe9 au lait\n" * 200).encode("latin-1"))
    result = invoke("train", latin, "--out", tmp_path / "latin", "--steps", 2, *SMALL, "--encoding", "latin-1", "-q")
    assert result.exit_code == 0, result.output
    assert "\xe9" in load_checkpoint(tmp_path / "latin").vocab.chars


def test_corpus_shorter_than_one_batch_names_what_would_fit(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("abcdefghij" * 5, encoding="utf-8")
    out = tmp_path / "run"
    line = assert_one_line_error(invoke("train", corpus, "--out", out, "--steps", 1, "--batch", 8, "--seq-len", 16,
                                        "--val-fraction", 0), 2, "--batch 8", "--seq-len 16")
    assert "52 ids" in line and "largest --batch that fits with --seq-len 16 is 3" in line
    assert not out.exists()


def test_few_batches_warn_and_one_document_cannot_be_held_out(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("abcdefghij" * 20, encoding="utf-8")
    result = invoke("train", corpus, "--out", tmp_path / "run", "--steps", 2, *SMALL, "-q")
    assert result.exit_code == 0, result.output
    assert re.search(r"warning: only \d batch\(es\) per epoch", result.stderr), result.stderr
    lines = tmp_path / "lines.txt"
    lines.write_text("only one document here, long enough to train on " * 3, encoding="utf-8")
    result = invoke("train", lines, "--out", tmp_path / "lines", "--steps", 1, *SMALL, "--eos", "lines")
    # one document cannot be split into whole-document train/val parts: a usage error naming the ways out
    assert_one_line_error(result, 2, "too few to hold out whole documents", "--val-fraction 0")


def test_a_single_distinct_character_trains_with_a_warning(tmp_path):
    corpus = tmp_path / "aaa.txt"
    corpus.write_text("a" * 3000, encoding="utf-8")
    result = invoke("train", corpus, "--out", tmp_path / "run", "--steps", 3, *SMALL, "-q")
    assert result.exit_code == 0, result.output
    assert "warning: the corpus has only one distinct character" in result.stderr
    assert load_checkpoint(tmp_path / "run", prefer="latest").train["step"] == 3


@pytest.mark.parametrize("args", [
    ["--seq-len", "0"], ["--batch", "0"], ["--layers", "0"], ["--clip", "-1"], ["--clip", "nan"], ["--lr", "-1"],
    ["--lr", "inf"], ["--warmup", "-1"], ["--optimizer", "lbfgs"], ["--steps", "0"], ["--epochs", "0"],
    ["--eos", "words"], ["--keep-going"], ["--weight-decay", "-0.1"], ["--max-vocab", "2"],
])
def test_nonsense_hyperparameters_are_usage_errors_before_any_work(tmp_path, trained, args):
    out = tmp_path / "run"
    assert_one_line_error(invoke("train", trained["corpus"], "--out", out, "--steps", 5, *args), 2)
    assert not out.exists()


def test_run_dir_that_is_a_file_or_cannot_be_created_is_one_line(tmp_path, trained):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert_one_line_error(invoke("train", trained["corpus"], "--out", afile, "--steps", 1, *SMALL), 2, "is a file")
    assert_one_line_error(invoke("train", trained["corpus"], "--out", afile / "sub", "--steps", 1, *SMALL), 1,
                          "cannot use run directory", "Not a directory")
    assert afile.read_text() == "keep me"
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    target = readonly / "run"
    if os.access(readonly, os.W_OK):  # root ignores permission bits; sysfs refuses mkdir even to root
        target = "/sys/kernel/charlm-reliability-test"
    line = assert_one_line_error(invoke("train", trained["corpus"], "--out", target, "--steps", 1, *SMALL), 1,
                                 "cannot use run directory")
    assert "denied" in line or "not permitted" in line


# ---------------------------------------------------------------------------------------- sampling


def test_prime_with_unseen_characters_warns_with_repr_or_fails_when_strict(trained):
    result = invoke("sample", trained["run"], "-p", "the 🐈\x07", "-l", 5, "--seed", 0)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the 🐈\x07")
    warning = [line for line in result.stderr.splitlines() if "outside the vocabulary" in line]
    assert len(warning) == 1 and "'🐈'" in warning[0] and "'\\x07'" in warning[0]
    assert_one_line_error(invoke("sample", trained["run"], "-p", "the 🐈", "--strict-prime"), 2, "🐈")


def test_empty_prime_starts_from_eos_and_length_zero_prints_nothing(trained):
    a = invoke("sample", trained["run"], "-p", "", "-l", 30, "--seed", 4)
    b = invoke("sample", trained["run"], "-l", 30, "--seed", 4)
    assert a.exit_code == 0 and a.stdout == b.stdout and len(a.stdout.rstrip("\n")) == 30
    for extra in ([], ["-p", "the "], ["--json"]):
        result = invoke("sample", trained["run"], "-l", 0, "--seed", 1, *extra)
        assert result.exit_code == 0, result.output
    assert invoke("sample", trained["run"], "-l", 0, "--seed", 1).stdout == ""
    assert invoke("sample", trained["run"], "-l", 0, "-p", "the ", "--seed", 1).stdout.startswith("the ")


def test_extreme_temperatures_stay_finite_and_invalid_ones_are_usage_errors(trained):
    greedy = invoke("sample", trained["run"], "-t", 0, "-l", 80, "-n", 3)
    tiny = invoke("sample", trained["run"], "-t", "1e-8", "-l", 80, "-n", 3, "--seed", 7)
    assert greedy.exit_code == 0 and tiny.exit_code == 0
    assert tiny.stdout == greedy.stdout  # 1e-8 neither overflows nor differs from argmax
    hot = json.loads(invoke("sample", trained["run"], "-t", "1e6", "-l", 400, "--seed", 1, "--json").stdout)
    assert np.isfinite(hot[0]["logprob"])
    vocab_size = load_checkpoint(trained["run"]).vocab.size
    # nearly uniform: the log-probability of 400 characters is close to 400 * log(1 / V)
    assert hot[0]["logprob"] == pytest.approx(-400 * np.log(vocab_size), rel=0.05)
    for bad in (["-t", "-0.5"], ["-t", "nan"], ["-t", "-inf"], ["--top-k", vocab_size + 1]):
        assert_one_line_error(invoke("sample", trained["run"], *bad), 2)


@pytest.mark.slow
def test_same_seed_same_text_across_processes(trained):
    runs = [subprocess.run([*CHARLM, "sample", str(trained["ckpt"]), "-l", "60", "-n", "2", "--seed", "11"],
                           capture_output=True, text=True, timeout=60) for _ in range(2)]
    assert runs[0].returncode == 0 and runs[0].stdout == runs[1].stdout and len(runs[0].stdout) > 60


# ---------------------------------------------------------------------------------------- checkpoints


def test_foreign_files_are_not_charlm_checkpoints_and_nothing_is_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    files = {"exploit.pkl": pickle.dumps(Exploit()), "notes.txt": b"just some text\n" * 5,
             "random.bin": np.random.default_rng(0).bytes(300), "tiny.bin": b"\x01\x02"}
    np.savez(tmp_path / "weights.npz", w=np.zeros(4))
    np.save(tmp_path / "weights.npy", np.zeros(4))
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    kinds = {"exploit.pkl": "pickle", "weights.npz": ".npz", "weights.npy": ".npy", "notes.txt": "",
             "random.bin": "", "tiny.bin": "only 2 bytes"}
    for name, kind in kinds.items():
        for command in (["info"], ["sample"], ["perplexity", str(tmp_path / "notes.txt")]):
            line = assert_one_line_error(invoke(command[0], tmp_path / name, *command[1:]), 1,
                                         "not a charlm checkpoint", kind)
            assert name in line
    other = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(3, np.float32)}, str(other), metadata={"format": "pt"})
    assert_one_line_error(invoke("info", other), 1, "not a charlm checkpoint")
    assert not marker.exists()


def test_checkpoint_truncated_at_any_byte_fails_cleanly_and_resume_falls_back(trained, run_copy):
    blob = trained["ckpt"].read_bytes()
    damaged = run_copy.parent / "cut.safetensors"
    for cut in (0, 7, 8, 9, 100, len(blob) // 2, len(blob) - 1):
        damaged.write_bytes(blob[:cut])
        line = assert_one_line_error(invoke("info", damaged), 1)
        assert ("truncated" in line and f"file has {cut}" in line) or "not a charlm checkpoint" in line, line
    newest = run_copy / "ckpt-00000012.safetensors"
    newest.write_bytes(blob[: len(blob) // 2])
    (run_copy / "best.safetensors").unlink()
    sampled = invoke("sample", run_copy, "-l", 10, "--seed", 0)
    assert sampled.exit_code == 0 and "skipping ckpt-00000012" in sampled.stderr
    before = digest(run_copy)
    resumed = invoke("train", trained["corpus"], "--out", run_copy, "--resume", "--steps", 14)
    assert resumed.exit_code == 0, resumed.output
    assert "warning: skipping ckpt-00000012.safetensors" in resumed.stderr
    assert "resumed ckpt-00000008.safetensors at step 8" in resumed.stderr
    assert before["ckpt-00000008.safetensors"]  # (pruned after the run re-saved step 12 and saved step 14)
    assert load_checkpoint(run_copy / "ckpt-00000012.safetensors").train["step"] == 12
    assert load_checkpoint(run_copy, prefer="latest").train["step"] == 14


def _parts(path):
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _pack(header, payload=b"", *, raw=None):
    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def _resealed(path, change):
    """A checkpoint whose tensors/metadata were changed by `change(tensors, meta)`, with a matching checksum."""
    header, _ = _parts(path)
    meta = dict(header["__metadata__"])
    tensors = dict(safetensors.numpy.load(path.read_bytes()))
    change(tensors, meta)
    meta["payload_sha256"] = payload_digest(tensors, meta)
    return safetensors.numpy.save(tensors, metadata=meta)


def _tampered(ckpt):
    header, payload = _parts(ckpt)
    names = [k for k in header if k != "__metadata__"]
    first = names[0]
    a, b = header[first]["data_offsets"]

    def edit(fn):
        h = json.loads(json.dumps(header))
        fn(h)
        return _pack(h, payload)

    flipped = bytearray(ckpt.read_bytes())
    flipped[-3] ^= 0x10
    raw = json.dumps(header).encode()
    param = next(k for k in names if k.startswith("param/") and header[k]["dtype"] == "F32")
    matrix = next(k for k in names if k.startswith("param/") and len(header[k]["shape"]) == 2)

    def set_nan(t, m):
        t[param] = t[param].copy()
        t[param].flat[0] = np.nan

    def config_change(**changes):
        def change(t, m):
            m["config"] = json.dumps(json.loads(m["config"]) | changes)
        return change

    return {
        "payload bit flip": (bytes(flipped), ["checksum mismatch"]),
        "length prefix past the end": (struct.pack("<Q", len(raw) + 50) + raw, ["truncated", "header declares"]),
        "length prefix over the cap": (struct.pack("<Q", 2**40) + b"{" + bytes(64), ["over the", "byte limit"]),
        "overlapping offsets": (edit(lambda h: h[names[1]].update(data_offsets=[a, a + (b - a)]) or
                                     h[names[1]].update(shape=h[first]["shape"], dtype=h[first]["dtype"])),
                                ["damaged checkpoint"]),
        "hole in the payload": (edit(lambda h: [h[k].update(data_offsets=[h[k]["data_offsets"][0] + 4,
                                                                           h[k]["data_offsets"][1] + 4])
                                                for k in names]) + b"\0" * 4, ["damaged checkpoint"]),
        "duplicate keys": (_pack(None, payload, raw=raw[:-1] + b', "' + first.encode() + b'": '
                                 + json.dumps(header[first]).encode() + b"}"), ["duplicate keys"]),
        "NaN in the header JSON": (_pack(None, payload, raw=raw.replace(b'"shape": [', b'"x": NaN, "shape": [', 1)),
                                   ["NaN in header JSON"]),
        "unknown dtype": (edit(lambda h: h[first].update(dtype="Q7")), ["malformed header entry"]),
        "missing tensor": (_resealed(ckpt, lambda t, m: t.pop(matrix)), ["missing ['" + matrix[6:]]),
        "extra tensor": (_resealed(ckpt, lambda t, m: t.update({"param/extra": np.zeros(2, np.float32)})),
                         ["extra ['extra']"]),
        "foreign tensor": (_resealed(ckpt, lambda t, m: t.update({"evil": np.zeros(2, np.float32)})),
                           ["unexpected tensors evil"]),
        "shape differs from config": (_resealed(ckpt, config_change(hidden=17)), ["shape", "config needs"]),
        "vocab size differs": (_resealed(ckpt, config_change(vocab_size=3)), ["vocabulary has", "expects 3"]),
        "wrong dtype": (_resealed(ckpt, lambda t, m: t.update({param: t[param].astype(np.float64)})),
                        [f"{param[6:]} is float64, config says float32"]),
        "non-finite weight": (_resealed(ckpt, set_nan), [f"tensor {param} holds non-finite values"]),
        "bad format_version": (_resealed(ckpt, lambda t, m: m.update(format_version="x")), ["invalid checkpoint"]),
    }


def test_tampered_checkpoints_each_have_a_specific_message(trained, tmp_path):
    cases = _tampered(trained["ckpt"])
    for name, (blob, fragments) in cases.items():
        path = tmp_path / "tampered.safetensors"
        path.write_bytes(blob)
        for command in ("info", "sample"):
            line = assert_one_line_error(invoke(command, path), 1, *fragments)
            assert "tampered.safetensors" in line, (name, line)
        assert path.read_bytes() == blob  # loading never writes


@pytest.mark.parametrize("drop, fragment", [
    ("cursor", "cannot resume, the training state is incomplete"),
    ("all", "data, train and rng must be JSON objects"),
])
def test_resume_from_checksummed_but_unusable_metadata_is_one_line(trained, run_copy, drop, fragment):
    """The checksum is not a signature: a crafted file with a valid digest must still fail cleanly."""
    newest = run_copy / "ckpt-00000012.safetensors"
    train = json.loads(_parts(newest)[0]["__metadata__"]["train"])
    train = [1, 2] if drop == "all" else {k: v for k, v in train.items() if k != drop}
    newest.write_bytes(_resealed(newest, lambda t, m: m.update(train=json.dumps(train))))
    (run_copy / "ckpt-00000008.safetensors").unlink()
    result = invoke("train", trained["corpus"], "--out", run_copy, "--resume", "--steps", 20)
    assert_one_line_error(result, 1, "ckpt-00000012.safetensors", fragment)


def test_newer_format_version_says_upgrade(trained, tmp_path):
    path = tmp_path / "future.safetensors"
    path.write_bytes(_resealed(trained["ckpt"], lambda t, m: m.update(format_version="3")))
    assert_one_line_error(invoke("info", path), 1, "format 3 is newer", "<= 1", "upgrade charlm")
    assert_one_line_error(invoke("sample", path), 1, "upgrade charlm")


def test_resume_with_other_vocabulary_or_architecture_lists_every_difference(trained, run_copy):
    before = digest(run_copy)
    result = invoke("train", trained["corpus"], "--out", run_copy, "--resume", "--steps", 20, "--hidden", 32,
                    "--layers", 2, "--max-vocab", 5, "--min-count", 2, "--eos", "lines")
    line = assert_one_line_error(result, 1, "cannot change the run being resumed")
    for diff in ("--hidden 32 (was 16)", "--layers 2 (was 1)", "--max-vocab 5 (was None)", "--min-count 2 (was 1)",
                 "--eos lines (was file)"):
        assert diff in line
    assert digest(run_copy) == before


# ---------------------------------------------------------------------------------------- runtime faults


@pytest.mark.slow
def test_disk_full_while_sampling_or_printing_is_one_line(trained):
    for args in (["sample", str(trained["run"]), "-l", "200", "--seed", "1"], ["info", str(trained["run"])],
                 ["sample", str(trained["run"]), "-l", "200", "--seed", "1", "--json"],
                 ["perplexity", str(trained["run"]), str(trained["corpus"])]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([*CHARLM, *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
        assert errors == ["Error: No space left on device"], proc.stderr
        assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def _signal_after_first_save(tmp_path, corpus, signals, pause=0.0, env=None):
    out = tmp_path / "run"
    proc = subprocess.Popen([*CHARLM, "train", str(corpus), "--out", str(out), *SMALL, "--steps", "100000",
                             "--save-every", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or charlm_env())
    deadline = time.monotonic() + 60
    while not list(out.glob("ckpt-*.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.01)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(pause)
    stdout, stderr = proc.communicate(timeout=60)
    return proc, out, stdout, stderr


@pytest.mark.slow
@pytest.mark.parametrize("signals, code", [([signal.SIGTERM], 143), ([signal.SIGINT, signal.SIGINT], 130),
                                           ([signal.SIGTERM, signal.SIGTERM, signal.SIGTERM], 143)])
def test_signals_during_training_save_then_exit_128_plus_signal(tmp_path, trained, signals, code):
    proc, out, stdout, stderr = _signal_after_first_save(tmp_path, trained["corpus"], signals, pause=0.002)
    assert proc.returncode == code, stderr
    assert stdout == "" and "Traceback" not in stderr and "Aborted" not in stderr
    newest = load_checkpoint(out, prefer="latest")
    name = signal.Signals(signals[0]).name
    assert f"interrupted ({name}): saved step {newest.train['step']} to {out / newest.path.name}" in stderr
    assert "Error" not in stderr  # a stop the user asked for
    assert f"resume with: charlm train {trained['corpus']} --out {out} --resume" in stderr
    assert not list(out.glob(".ckpt-*.tmp"))
    resumed = invoke("train", trained["corpus"], "--out", out, "--resume", "--steps", newest.train["step"] + 2, "-q")
    assert resumed.exit_code == 0, resumed.output


@pytest.mark.slow
def test_sigint_beside_a_busy_process_saves_calmly_and_exits_130(tmp_path, trained):
    # A busy sibling holds one core and the run chooses its own thread count (no thread variable set): the stop
    # is still one calm line naming the saved step, and the checkpoint resumes.
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        env = {k: v for k, v in charlm_env(threads=None).items() if not k.endswith("_NUM_THREADS")}
        proc, out, stdout, stderr = _signal_after_first_save(tmp_path, trained["corpus"], [signal.SIGINT], env=env)
    finally:
        busy.kill()
        busy.wait()
    assert proc.returncode == 130, stderr
    newest = load_checkpoint(out, prefer="latest")
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted (SIGINT): saved step {newest.train['step']} to {out / newest.path.name}; resume with: "
        f"charlm train {trained['corpus']} --out {out} --resume")
    assert stdout == "" and "Error" not in stderr and "Traceback" not in stderr
    resumed = invoke("train", trained["corpus"], "--out", out, "--resume", "--steps", newest.train["step"] + 2, "-q")
    assert resumed.exit_code == 0, resumed.output


def test_divergence_exits_3_and_leaves_checkpoints_byte_identical(tmp_path, trained, monkeypatch):
    out = tmp_path / "run"
    real = train_module.loss_and_grads
    snapshot = {}

    def poisoned(*args, **kwargs):
        loss, grads, state = real(*args, **kwargs)
        if len(list(out.glob("ckpt-*.safetensors"))) == 2 and not snapshot:
            snapshot.update(digest(out))
        if snapshot:
            next(iter(grads.values())).flat[0] = np.inf  # a non-finite gradient, with a finite loss
        return loss, grads, state

    monkeypatch.setattr(train_module, "loss_and_grads", poisoned)
    result = invoke("train", trained["corpus"], "--out", out, "--steps", 50, "--save-every", 3, *SMALL, "-q")
    assert_one_line_error(result, 3, "diverged at step 7", "gradient norm",
                          "last good checkpoint: ckpt-00000006.safetensors", "--lr", "--clip")
    after = digest(out)
    assert {k: v for k, v in after.items() if k.endswith(".safetensors")} == \
        {k: v for k, v in snapshot.items() if k.endswith(".safetensors")}
    assert np.isfinite(next(iter(load_checkpoint(out, prefer="latest").params.values()))).all()


def test_resuming_a_finished_run_is_a_note_with_exit_0(trained, run_copy):
    before = digest(run_copy)
    result = invoke("train", trained["corpus"], "--out", run_copy, "--resume")
    assert result.exit_code == 0 and "already at step 12 of 12" in result.stderr and result.stdout == ""
    assert {k: v for k, v in digest(run_copy).items() if k != "config.json"} == \
        {k: v for k, v in before.items() if k != "config.json"}


# ---------------------------------------------------------------------------------------- terminal hygiene


def _on_a_terminal(args, env_extra, *, stdout_tty=False):
    """Run charlm with stderr (and optionally stdout) on a pseudo-terminal; returns (code, stdout, terminal)."""
    master, slave = pty.openpty()
    env = charlm_env(COLUMNS="100", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    env.update(env_extra)
    proc = subprocess.Popen([*CHARLM, *args], stdout=slave if stdout_tty else subprocess.PIPE, stderr=slave,
                            env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    code = proc.wait(timeout=60)
    os.close(master)
    return code, stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("env_extra", [{"NO_COLOR": "1"}, {"TERM": "dumb"}, None])
def test_no_ansi_codes_without_a_colour_terminal(tmp_path, trained, env_extra):
    corpus = trained["corpus"]
    warn_corpus = tmp_path / "aaa.txt"
    warn_corpus.write_text("a" * 3000)
    commands = [
        (["train", str(corpus), "--out", str(tmp_path / "r1"), *SMALL, "--steps", "40", "--eval-every", "20"], False),
        (["train", str(warn_corpus), "--out", str(tmp_path / "r2"), *SMALL, "--steps", "2"], False),  # a warning
        (["perplexity", str(trained["run"]), str(corpus), "--show"], True),
        (["info", str(trained["run"])], True),
        (["sample", str(trained["run"]), "-p", "the 🐈", "-l", "20", "--seed", "1"], True),  # a warning
        (["vocab", str(corpus)], True),
        (["info", str(tmp_path / "missing.safetensors")], True),  # an error
    ]
    for args, stdout_tty in commands:
        if env_extra is None:  # stderr is a pipe, not a terminal: plain text everywhere
            proc = subprocess.run([*CHARLM, *args], capture_output=True, text=True, timeout=120,
                                  env=charlm_env(TERM="xterm-256color"))
            code, stdout, terminal = proc.returncode, proc.stdout, proc.stderr
        else:
            code, stdout, terminal = _on_a_terminal(args, env_extra, stdout_tty=stdout_tty)
        assert code in (0, 1, 2), (args, terminal)
        assert not ANSI.search(terminal), (args, env_extra, terminal[:300])
        assert not ANSI.search(stdout), (args, env_extra, stdout[:300])
        assert "Traceback" not in terminal


@pytest.mark.slow
def test_a_colour_terminal_does_get_ansi_codes(trained):
    """The control for the test above: the same check does see codes when colour is allowed."""
    code, _, terminal = _on_a_terminal(["perplexity", str(trained["run"]), str(trained["corpus"]), "--show"], {},
                                       stdout_tty=True)
    assert code == 0 and ANSI.search(terminal)


@pytest.mark.slow
def test_output_piped_into_head_exits_quietly(trained):
    for command in (f"sample {trained['run']} -n 50 -l 2000 --seed 1", f"sample {trained['run']} -n 40 -l 2000 --json",
                    f"perplexity {trained['run']} {trained['corpus']} --show", f"vocab {trained['corpus']}"):
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; {shlex.join(CHARLM)} {command} | head -1"],
                              capture_output=True, text=True, timeout=120)
        assert len(proc.stdout.splitlines()) == 1, (command, proc.stdout)
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr and "Error" not in proc.stderr, \
            (command, proc.stderr)
        assert proc.returncode == 0, (command, proc.returncode, proc.stderr)


@pytest.mark.slow
def test_training_survives_its_log_pipe_closing(tmp_path, trained):
    """`charlm train ... | head -1`: the reader of the progress/JSON lines leaving must not lose the run."""
    out = tmp_path / "run"
    command = (f"set -o pipefail; {shlex.join(CHARLM)} train {trained['corpus']} --out {out} {' '.join(SMALL)} "
               f"--steps 150 --eval-every 3 --json 2>&1 | head -1")
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                          env=charlm_env())
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert load_checkpoint(out, prefer="latest").train["step"] == 150
    assert load_checkpoint(out / "best.safetensors").train["best_val_final_mode"] in ("exact", "streams")


@pytest.mark.slow
def test_ctrl_c_outside_training_exits_130_in_one_line(trained):
    proc = subprocess.Popen([*CHARLM, "sample", str(trained["run"]), "-l", "3000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seed_line = proc.stderr.readline()  # printed after the checkpoint loads, just before generating
    assert seed_line.startswith("seed "), seed_line
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr
    assert stdout == ""
