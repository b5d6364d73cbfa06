"""`charlm train --task translate`, `charlm translate`, `charlm evaluate` and `charlm info` on a real run (a
subprocess trains it), and bad input: one line on stderr, the documented exit code, no traceback."""

import json

import numpy as np
import pytest
from helpers import assert_one_line_error, invoke
from helpers import run_charlm as run

from charlm.models.config import ModelConfig
from charlm.models.lm import init_params
from charlm.store.checkpoint import load_checkpoint, save_checkpoint
from charlm.tasks.registry import train
from charlm.tasks.translate.decoding import length_cap
from charlm.tasks.translate.translate_inference import as_translator, translate_texts
from charlm.text.tokenizer import Vocab
from charlm.text.vocab import EOS
from charlm.training.options import TrainOptions
from charlm.training.recipe_rules import TRANSLATE_ATTENTION

pytestmark = pytest.mark.slow

LETTERS = "abcdefgh"
RECORD = {"source", "output", "logprob", "score", "capped", "nbest"}


def reversals(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list(LETTERS), rng.integers(2, 6))) for _ in range(n)]
    return [f"{w}\t{w[::-1].upper()}" for w in words]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run directory, its corpus, a held-out file) of a real `charlm train --task translate`."""
    root = tmp_path_factory.mktemp("translate_cli")
    corpus = write(root / "reverse.tsv", "\n".join(reversals(200, 0)) + "\n")
    held = write(root / "held.tsv", "\n".join(reversals(30, 1)) + "\n")
    out = root / "run"
    done = run("train", corpus, "--task", "translate", "--steps", 30, "--hidden", 16, "--layers", 1, "--batch", 32,
               "--lr", "0.01", "--out", out, "-q")
    assert done.returncode == 0, done.stderr
    return out, corpus, held


@pytest.fixture(scope="module")
def others(tmp_path_factory):
    """A language model's checkpoint and a tagger's run, for the commands that refuse them."""
    root = tmp_path_factory.mktemp("others")
    vocab = Vocab.build({c: 1 for c in "abc "})
    cfg = ModelConfig("lstm", vocab.size, 4)
    lm = save_checkpoint(root / "lm.safetensors", params=init_params(cfg, np.random.default_rng(0)), config=cfg,
                         vocab=vocab, data={"eos_mode": "file", "encoding": "utf-8"})
    text = write(root / "text.txt", "The cat sat on the mat. Then it left.\n" * 20)
    train(TrainOptions(corpus=str(text), out=str(root / "tagger"), task="truecase", steps=2, hidden=4, layers=1))
    return lm, root / "tagger"


def test_translate_writes_one_line_per_input_as_the_library_decodes(trained):
    out, _, _ = trained
    done = run("translate", out, "abc", "dd", "hgfe")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    expected = translate_texts(as_translator(load_checkpoint(out)), ["abc", "dd", "hgfe"])
    assert lines == [record["output"] for record in expected]
    assert set("".join(lines)) <= set(LETTERS.upper())  # the target vocabulary's letters only


def test_translate_json_beam_and_nbest(trained):
    out, _, _ = trained
    records = json.loads(invoke("translate", out, "abc", "dd", "--json").stdout)
    assert [r["source"] for r in records] == ["abc", "dd"]
    for r in records:
        assert set(r) == RECORD and len(r["nbest"]) == 1
        assert r["nbest"][0] == {k: r[k] for k in ("output", "logprob", "score", "capped")}
        assert r["logprob"] <= 0 and isinstance(r["capped"], bool)
    text = invoke("translate", out, "abc", "dd", "--beam", 3, "--nbest", 2)
    beams = json.loads(invoke("translate", out, "abc", "dd", "--beam", 3, "--nbest", 2, "--json").stdout)
    assert text.exit_code == 0, text.output
    for r in beams:
        assert len(r["nbest"]) == 2 and r["nbest"][0]["score"] >= r["nbest"][1]["score"]
        assert r["nbest"][0]["output"] != r["nbest"][1]["output"] and r["output"] == r["nbest"][0]["output"]
    # each input's outputs one per line, a blank line between inputs
    assert text.stdout.split("\n") == [beams[0]["nbest"][0]["output"], beams[0]["nbest"][1]["output"], "",
                                       beams[1]["nbest"][0]["output"], beams[1]["nbest"][1]["output"], ""]


def test_translate_reads_stdin_lines(trained):
    out, _, _ = trained
    piped = run("translate", out, input="abc\ndd\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == invoke("translate", out, "abc", "dd").stdout and len(piped.stdout.splitlines()) == 2


def test_translate_samples_with_a_seed(trained):
    out, _, _ = trained
    first = run("translate", out, "abc", "-n", 4, "--seed", 3, "--json")
    assert first.returncode == 0, first.stderr
    records = json.loads(first.stdout)
    assert len(records[0]["nbest"]) == 4
    assert records == json.loads(invoke("translate", out, "abc", "-n", 4, "--seed", 3, "--json").stdout)
    text = invoke("translate", out, "abc", "-n", 4, "--seed", 3)
    assert text.stdout.splitlines() == [o["output"] for o in records[0]["nbest"]]


def test_evaluate_gives_every_figure(trained):
    out, _, held = trained
    done = run("evaluate", out, held, "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert {"task", "n", "exact_match", "wer", "ter", "bleu", "chrf", "nats_per_token"} <= set(found)
    sources = {line.split("\t")[0] for line in held.read_text(encoding="utf-8").splitlines()}
    assert found["task"] == "translate" and found["n"] == len(sources) and found["pairs"] == 30
    assert found["wer"] == pytest.approx(1 - found["exact_match"])
    assert 0 <= found["bleu"] <= 100 and 0 <= found["chrf"] <= 100 and found["ter"] >= 0
    assert 0 < found["nats_per_token"] < np.log(len(LETTERS) + 2) + 0.5
    beam = json.loads(invoke("evaluate", out, held, "--json", "--beam", 2).stdout)
    assert beam["beam"] == 2 and beam["nats_per_token"] == found["nats_per_token"]
    table = invoke("evaluate", out, held)
    assert table.exit_code == 0 and "exact match" in table.stdout and "chrF" in table.stdout


def test_info_shows_the_kind_attention_and_both_vocabularies(trained):
    out, _, _ = trained
    done = run("info", out)
    assert done.returncode == 0, done.stderr
    rows = {line.split("  ")[0].strip(): line for line in done.stdout.splitlines()}
    assert "encoder–decoder" in rows["task"] and f"attention {TRANSLATE_ATTENTION}" in rows["task"]
    assert "char -> char" in rows["task"] and "bidirectional encoder" in rows["task"]
    assert "10 ids" in rows["source vocabulary"] and "10 ids" in rows["target vocabulary"]
    assert rows["source characters"].split()[-1] == LETTERS
    assert rows["target characters"].split()[-1] == LETTERS.upper()
    assert "encoder" in rows["parameters"] and "decoder" in rows["parameters"]
    assert "nats/token" in rows["best val"] and "bits" not in rows["best val"]
    described = json.loads(run("info", out, "--json").stdout)
    task = described["task"]
    assert described["kind"] == "seq2seq" and task["kind"] == "encoder–decoder"
    assert (task["task"], task["attention"], task["source_tokens"], task["target_tokens"]) == \
        ("translate", TRANSLATE_ATTENTION, "char", "char")
    assert task["target_vocab"]["chars"] == LETTERS.upper() and task["target_vocab"]["size"] == 10
    assert described["vocab"]["chars"] == LETTERS
    assert sum(task["parameters"].values()) == described["model"]["parameters"]
    assert all(n > 0 for n in task["parameters"].values())


def test_a_source_far_longer_than_any_seen_stops_at_the_cap_and_says_so(trained, tmp_path):
    out, _, _ = trained
    long = LETTERS * 8
    done = invoke("translate", out, long)
    assert done.exit_code == 0, done.output
    assert len(done.stdout.rstrip("\n")) <= length_cap(len(long))
    # the same model made never to write <EOS>: cut at the cap, and stderr says so in one line
    ckpt = load_checkpoint(out)
    ckpt.params["head.b"][EOS] = -1e9
    never = save_checkpoint(tmp_path / "never.safetensors", params=ckpt.params, config=ckpt.config, vocab=ckpt.vocab,
                            data=ckpt.data, train=ckpt.train)
    done = run("translate", never, long, "abc")
    assert done.returncode == 0, done.stderr
    assert [len(line) for line in done.stdout.splitlines()] == [length_cap(len(long)), length_cap(3)]
    [note] = done.stderr.strip().splitlines()
    assert note.startswith("2 output(s) reached the length cap") and "Traceback" not in done.stderr
    assert invoke("translate", never, "abc", "-q").stderr == ""
    records = json.loads(invoke("translate", never, "abc", "--json", "-q").stdout)
    assert records[0]["capped"] is True


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("text", "message"), [
    ("abc\tCBA\nno tab here\n", "bad.tsv:2: no tab (expected source<TAB>target)"),
    ("abc\tCBA\n\tX\n", "bad.tsv:2: the source is empty"),
    ("abc\tCBA\nab\t  \n", "bad.tsv:2: the target is empty"),
])
def test_a_bad_pairs_file_is_a_data_error_naming_its_line(trained, tmp_path, text, message):
    out, _, _ = trained
    bad = write(tmp_path / "bad.tsv", text)
    assert_one_line_error(run("train", bad, "--task", "translate", "--steps", 1, "--out", tmp_path / "r"), 1,
                          message, alone=True)
    assert_one_line_error(invoke("evaluate", out, bad), 1, message, alone=True)


def test_a_translate_checkpoint_is_refused_by_the_other_models_commands(trained):
    out, _, _ = trained
    for args, what in ((["sample", out], "a language model"), (["tag", out, "abc"], "a tagger"),
                       (["classify", out, "abc"], "a classifier")):
        assert_one_line_error(invoke(*args), 2, f"is an encoder–decoder, not {what}: use charlm translate",
                              alone=True)
    assert_one_line_error(run("sample", out), 2, "is an encoder–decoder, not a language model", alone=True)


def test_other_models_are_refused_by_translate(others):
    lm, tagger = others
    assert_one_line_error(invoke("translate", lm, "abc"), 2, "is a language model, not an encoder–decoder: use "
                          "charlm sample", alone=True)
    assert_one_line_error(invoke("translate", tagger, "abc"), 2, "is a tagger, not an encoder–decoder", alone=True)


@pytest.mark.parametrize(("args", "message"), [
    (["abc", "--beam", "0"], "--beam must be at least 1, got 0"),
    (["abc", "--nbest", "3", "--beam", "2"], "--nbest must be between 1 and --beam 2, got 3"),
    (["abc", "--nbest", "2"], "--nbest must be between 1 and --beam 1, got 2"),
    (["abc", "-n", "0"], "-n must be at least 1"),
    (["abc", "-n", "2", "--beam", "2"], "does not go with --beam or --nbest"),
    (["abc", "--temperature", "-1"], "temperature must be a finite number >= 0"),
    (["zzz"], "'zzz': every token of the source is unknown to the model ('z')"),
    ([""], "TEXT 1 is empty"),
])
def test_bad_decoding_options_and_inputs_are_usage_errors(trained, args, message):
    out, _, _ = trained
    assert_one_line_error(invoke("translate", out, *args), 2, message, alone=True)


def test_bad_decoding_input_from_a_real_process(trained):
    out, _, _ = trained
    assert_one_line_error(run("translate", out, "--beam", 0, "abc"), 2, "--beam must be at least 1", alone=True)
    assert_one_line_error(run("translate", out, input="abc\n\ndd\n"), 2, "<stdin>:2: empty line", alone=True)
    assert_one_line_error(run("translate", out, "zz", "qq"), 2, "every token of the source is unknown", alone=True)
    # a bad option is named before a bad text
    assert_one_line_error(invoke("translate", out, "--beam", 0, "zz"), 2, "--beam must be at least 1", alone=True)


def test_a_pairs_file_with_an_unknown_only_source_names_its_line(trained, tmp_path):
    out, _, _ = trained
    pairs = write(tmp_path / "unknown.tsv", "abc\tCBA\nzzz\tZZZ\n")
    assert_one_line_error(invoke("evaluate", out, pairs), 2, f"{pairs}:2: every token of the source is unknown",
                          alone=True)


@pytest.mark.parametrize(("task", "args"), [
    ("lm", ["--attention", "dot"]), ("lm", ["--source-tokens", "word"]), ("lm", ["--target-tokens", "symbols"]),
    ("classify", ["--attention", "dot"]), ("classify", ["--source-tokens", "char"]),
    ("truecase", ["--attention", "general"]),
])
def test_translate_options_are_refused_by_other_tasks(tmp_path, task, args):
    corpus = write(tmp_path / "labels.tsv", "".join(f"{'pos' if i % 2 else 'neg'}\tsome text {i}\n"
                                                     for i in range(40)))
    done = invoke("train", corpus, "--task", task, "--steps", 1, "--out", tmp_path / "r", *args)
    assert_one_line_error(done, 2, f"{args[0]} does not apply to --task {task}", alone=True)
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.safetensors"))
