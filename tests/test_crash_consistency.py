"""Crash consistency.

1. A training subprocess that checkpoints every step is SIGKILLed 20 times at seeded random moments: some
   from outside after a random delay, most from inside at the k-th file event of the process (before or
   after an fsync, before or after a rename, or half-way through writing a temp file, as ckpt-chaos does
   with audit hooks). After every kill `--resume` must start from the newest checkpoint that validates,
   remove the temp files the kill left, and the finished run must equal an uninterrupted one bit for bit.
2. A failure (ENOSPC / EIO) injected at each write, fsync, rename and directory fsync of a save during a
   real training run: exit 1 with "could not save checkpoint ...; last good checkpoint: ...", the older
   checkpoint byte-identical and loadable, no temp file left.
"""

import errno
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import CHARLM, charlm_env, invoke

import charlm.atomic as atomic_module
import charlm.store.checkpoint as checkpoint_module
from charlm.atomic import TEMP_GLOB
from charlm.errors import CheckpointError
from charlm.store.checkpoint import checkpoint_files, load_checkpoint

SMALL = ["--cell", "lstm", "--hidden", "16", "--layers", "1", "--batch", "4", "--seq-len", "16"]
STEPS = 120

# Runs charlm in this process after wrapping os.fsync / os.replace / writes to temp files, so that the
# process SIGKILLs itself at the KILL_AT-th event of one kind ("fsync", "fsync-after", "replace",
# "replace-after" or "write" = half of a temp file written). The real save code runs unchanged.
KILL_HOOK = r"""
import os, signal, sys
kind, at = os.environ["KILL_AT"].split(":")
at = int(at)
count = {"fsync": 0, "replace": 0, "write": 0}

def die():
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def counted(name, real, after):
    def wrapper(*args, **kwargs):
        count[name] += 1
        hit = kind.startswith(name) and count[name] == at
        if hit and not after:
            die()
        result = real(*args, **kwargs)
        if hit and after:
            die()
        return result
    return wrapper

os.fsync = counted("fsync", os.fsync, kind == "fsync-after")
os.replace = counted("replace", os.replace, kind == "replace-after")
real_fdopen = os.fdopen

class TornFile:
    def __init__(self, f):
        self.f = f
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.f.__exit__(*exc)
    def write(self, data):
        count["write"] += 1
        if kind == "write" and count["write"] == at:
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            die()
        return self.f.write(data)
    def __getattr__(self, name):
        return getattr(self.f, name)

os.fdopen = lambda fd, mode="r", *a, **k: TornFile(real_fdopen(fd, mode, *a, **k)) if "w" in mode else \
    real_fdopen(fd, mode, *a, **k)
from charlm.cli.main import main
sys.argv[0] = "charlm"
main()
"""


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, size=8)) for _ in range(300)) + "\n", encoding="utf-8")
    return path


def _newest_valid(run_dir):
    for path in checkpoint_files(run_dir):
        try:
            load_checkpoint(path)
        except CheckpointError:
            continue
        return path.name
    return None


def _strays(run_dir):
    return {p.name for p in run_dir.glob(TEMP_GLOB)}


def _losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def _kill_from_outside(proc, run_dir, delay):
    """SIGKILL `proc` `delay` seconds after it writes its first new step checkpoint (or a temp file)."""
    before = {p.name for p in run_dir.glob("ckpt-*.safetensors")}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        now = {p.name for p in run_dir.glob("ckpt-*.safetensors")}
        if now - before:
            break
        time.sleep(0.002)
    time.sleep(delay)
    proc.kill()


@pytest.mark.slow
def test_twenty_sigkills_then_resume_equals_an_uninterrupted_run(tmp_path, corpus):
    rng = np.random.default_rng(2024)
    common = [str(corpus), *SMALL, "--steps", str(STEPS), "--save-every", "1", "--seed", "5", "--val-fraction",
              "0.05"]
    straight, run = tmp_path / "straight", tmp_path / "killed"
    reference = subprocess.run([*CHARLM, "train", *common, "--out", str(straight), "-q"],
                               capture_output=True, text=True, env=charlm_env(), timeout=120)
    assert reference.returncode == 0, reference.stderr

    kills, verified_resumes, tears, plans = 0, 0, 0, []
    first, torn = True, set()
    while kills < 20:
        expected = None
        stray_before = _strays(run) if run.exists() else set()
        if not first:
            # atomic saves: a kill never leaves a torn file under a checkpoint's final name
            for path in [*checkpoint_files(run), run / "best.safetensors"]:
                if path.exists() and path.read_bytes() not in torn:  # (unless torn by this test below)
                    load_checkpoint(path)
            if kills in (6, 13):  # power loss: the newest file lost its unsynced tail
                newest = checkpoint_files(run)[0]
                half = newest.read_bytes()[: newest.stat().st_size // 2]
                newest.write_bytes(half)
                torn.add(half)
                tears += 1
            expected = _newest_valid(run)
            assert expected is not None
        args = [*common, "--out", str(run)] if first else [str(corpus), "--out", str(run), "--resume"]
        mode = "outside" if first or rng.random() < 0.25 else str(rng.choice(
            ["fsync", "fsync-after", "replace", "replace-after", "write"]))
        if mode == "outside":
            proc = subprocess.Popen([*CHARLM, "train", *args], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, env=charlm_env())
            _kill_from_outside(proc, run, float(rng.uniform(0, 0.03)))
            plan = "outside"
        else:
            # setup writes config.json and rewrites metrics.jsonl (1 fsync pair, 1 rename, 1 write each);
            # every step checkpoint adds the same; so k in 3..10 lands in one of the first few saves
            at = int(rng.integers(3, 11)) if mode.startswith("fsync") else int(rng.integers(2, 6))
            plan = f"{mode}:{at}"
            proc = subprocess.Popen([sys.executable, "-c", KILL_HOOK, "train", *args], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, env=dict(charlm_env(), KILL_AT=plan))
        _, stderr = proc.communicate(timeout=120)
        plans.append(plan)
        assert "Traceback" not in stderr, stderr
        if proc.returncode == 0:  # the run finished before the kill landed: nothing more to kill
            break
        assert proc.returncode == -signal.SIGKILL, (plan, proc.returncode, stderr)
        kills += 1
        first = False
        # the previous kill's temp files were removed by this resume (if it got as far as taking the lock)
        if "resumed " in stderr:
            verified_resumes += 1
            assert f"resumed {expected} at step" in stderr, (plan, expected, stderr)
            assert not (stray_before & _strays(run)), plan
    assert kills == 20, plans

    final = subprocess.run([*CHARLM, "train", str(corpus), "--out", str(run), "--resume",
                            "--json"], capture_output=True, text=True, env=charlm_env(), timeout=120)
    assert final.returncode == 0, final.stderr
    assert not _strays(run)
    assert verified_resumes >= 12, plans  # most resumes got far enough to say where they started
    assert tears == 2
    a = load_checkpoint(straight / f"ckpt-{STEPS:08d}.safetensors")
    b = load_checkpoint(run / f"ckpt-{STEPS:08d}.safetensors")
    for name in a.params:
        assert np.array_equal(a.params[name], b.params[name]), name
    for name in a.optim:
        assert np.array_equal(a.optim[name], b.optim[name]), name
    assert a.rng == b.rng and a.train["cursor"] == b.train["cursor"]
    assert _losses(run) == _losses(straight)  # no repeated or missing step in the log either


# ------------------------------------------------------------------------------- injected save failures


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train_metadata(blob: bytes) -> dict:
    """The `train` metadata of a checkpoint's bytes (a safetensors header: 8-byte length, then JSON)."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(json.loads(blob[8:8 + n])["__metadata__"]["train"])


@pytest.mark.parametrize("where", ["write", "fsync", "replace", "dir-fsync"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_failure_at_each_file_operation_of_a_save_keeps_the_older_checkpoint(tmp_path, corpus, monkeypatch,
                                                                              where, code):
    out = tmp_path / "run"
    armed = {"on": False, "fsyncs": 0}
    older = {}
    real_write = checkpoint_module.write_atomic

    def write_atomic(path, data):  # arm the fault for the save of step 3 only
        armed["on"] = path.name == "ckpt-00000003.safetensors"
        if armed["on"]:
            older["path"] = out / "ckpt-00000002.safetensors"
            older["sha"] = _sha(older["path"])
        try:
            return real_write(path, data)
        finally:
            armed["on"] = False

    def fail():
        raise OSError(code, os.strerror(code))

    real_fsync, real_replace, real_fdopen = os.fsync, os.replace, os.fdopen

    def fsync(fd):
        if armed["on"]:
            armed["fsyncs"] += 1
            if (where == "fsync" and armed["fsyncs"] == 1) or (where == "dir-fsync" and armed["fsyncs"] == 2):
                fail()
        return real_fsync(fd)

    def replace(src, dst):
        if armed["on"] and where == "replace":
            fail()
        return real_replace(src, dst)

    class FailingFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            if armed["on"] and where == "write":
                self.f.write(data[: len(data) // 3])
                fail()
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(checkpoint_module, "write_atomic", write_atomic)
    monkeypatch.setattr(atomic_module.os, "fsync", fsync)
    monkeypatch.setattr(atomic_module.os, "replace", replace)
    monkeypatch.setattr(atomic_module.os, "fdopen", lambda fd, mode="r": FailingFile(real_fdopen(fd, mode)))
    result = invoke("train", str(corpus), "--out", str(out), *SMALL, "--steps", "10",
                    "--save-every", "1", "-q")
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # after a failed directory fsync the new file is complete and in place, so it is the last good one
    last_good = "ckpt-00000003.safetensors" if where == "dir-fsync" else "ckpt-00000002.safetensors"
    assert lines[0] == (f"Error: could not save checkpoint ckpt-00000003.safetensors: {os.strerror(code)}; "
                        f"last good checkpoint: {last_good}")
    assert _sha(older["path"]) == older["sha"]
    assert load_checkpoint(older["path"]).train["step"] == 2
    assert load_checkpoint(out, prefer="latest").train["step"] == (3 if where == "dir-fsync" else 2)
    assert not list(out.glob(TEMP_GLOB)) and not list(out.glob("*.tmp"))
    resumed = invoke("train", str(corpus), "--out", str(out), "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout.splitlines()[-1])["steps"] == 10


def test_disk_full_while_rewriting_best_at_the_end_names_the_last_good_checkpoint(tmp_path, corpus, monkeypatch):
    out = tmp_path / "run"
    real_write = checkpoint_module.write_atomic
    seen = {}

    def write_atomic(path, data):
        if "best_val_final" in _train_metadata(data):  # the final rewrite of best.safetensors
            seen["best"] = _sha(path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, data)

    monkeypatch.setattr(checkpoint_module, "write_atomic", write_atomic)
    result = invoke("train", str(corpus), "--out", str(out), *SMALL, "--steps", "6", "-q")
    monkeypatch.undo()
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.output
    assert result.stderr.strip() == ("Error: could not save checkpoint best.safetensors: No space left on device; "
                                     "last good checkpoint: ckpt-00000006.safetensors")
    assert _sha(out / "best.safetensors") == seen["best"]
    assert load_checkpoint(out / "best.safetensors").train["step"] == 6


def test_disk_full_while_logging_metrics_names_the_file_and_last_checkpoint(tmp_path, corpus, monkeypatch):
    import charlm.store.rundir as rundir_module

    out = tmp_path / "run"
    calls = {"n": 0}

    def failing_open(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            calls["n"] += 1
            if calls["n"] == 7:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(rundir_module, "open", failing_open, raising=False)
    result = invoke("train", str(corpus), "--out", str(out), *SMALL, "--steps", "20",
                    "--save-every", "3", "-q")
    monkeypatch.undo()
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.output
    assert result.stderr.strip() == (f"Error: could not write {out / 'metrics.jsonl'}: No space left on device; "
                                     f"last good checkpoint: ckpt-00000006.safetensors")
    assert load_checkpoint(out, prefer="latest").train["step"] == 6
    resumed = invoke("train", str(corpus), "--out", str(out), "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert [s for s, _ in _losses(out)] == list(range(1, 21))
