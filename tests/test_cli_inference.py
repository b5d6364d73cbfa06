"""`charlm sample`, `perplexity`, `score` and `info` through click's CliRunner on real checkpoint files."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, invoke
from inference_models import train_tiny, write_checkpoint

from charlm.cli.commands.perplexity import coloured, surprisal_style
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.lm.scoring import score_ids
from charlm.text.cache import prepare_corpus
from charlm.text.tokenizer import EOS, Vocab

REAL_TEXT = Path(__file__).resolve().parents[1] / "charlm" / "text" / "tokenizer.py"
SENTENCES = ["the apple and pear salad", "a pear and an apple", "pear salad with apple", "the pear tree",
             "apple and pear salad for all", "the salad and the pear"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A lines-mode checkpoint trained on SENTENCES, a file-mode random one, a uniform one, and a corpus."""
    root = tmp_path_factory.mktemp("inference")
    vocab = Vocab(sorted(set("".join(SENTENCES))))
    ids = [EOS]
    for line in SENTENCES * 30:
        ids += [*vocab.encode(line).tolist(), EOS]
    params, cfg = train_tiny(np.array(ids), vocab.size, steps=70, seq_len=32, batch=16, lr=2e-2)
    (root / "run").mkdir()
    lines_ckpt = write_checkpoint(root / "run" / "best.safetensors", params, cfg, vocab, eos_mode="lines",
                                  train={"step": 70, "epoch": 1, "train_seconds": 3.0, "best_val": 0.9})
    corpus = root / "sentences.txt"
    corpus.write_text("\n".join(SENTENCES * 3) + "\n")

    cfg = ModelConfig("gru", vocab.size, 16, layers=2)
    file_ckpt = write_checkpoint(root / "file.safetensors", init_params(cfg, np.random.default_rng(1)), cfg,
                                 vocab)
    uniform = init_params(cfg, np.random.default_rng(2))
    uniform["head.W"][:] = 0.0
    uniform_ckpt = write_checkpoint(root / "uniform.safetensors", uniform, cfg, vocab)

    damaged = root / "damaged.safetensors"
    blob = bytearray(file_ckpt.read_bytes())
    blob[-5] ^= 0xFF
    damaged.write_bytes(bytes(blob))
    truncated = root / "truncated.safetensors"
    truncated.write_bytes(file_ckpt.read_bytes()[:-100])
    text = root / "notes.txt"
    text.write_text("not a checkpoint at all\n")
    return dict(run=root / "run", lines=lines_ckpt, file=file_ckpt, uniform=uniform_ckpt, corpus=corpus,
                damaged=damaged, truncated=truncated, text=text, vocab=vocab, root=root)


# ---------------------------------------------------------------------------------------------- sample


def test_lines_model_prints_n_samples_one_per_line(files):
    result = invoke("sample", files["run"], "-n", 7, "--seed", 1)
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert len(lines) == 8 and lines[-1] == ""
    records = json.loads(invoke("sample", files["run"], "-n", 7, "--seed", 1, "--json").stdout)
    assert [r["text"] for r in records] == lines[:-1]
    assert all(r["ended_at_eos"] and r["logprob"] < 0 for r in records)


def test_same_seed_same_output_and_seed_is_shown_when_random(files):
    a = invoke("sample", files["lines"], "-n", 5, "--seed", 3)
    b = invoke("sample", files["lines"], "-n", 5, "--seed", 3)
    c = invoke("sample", files["lines"], "-n", 5, "--seed", 4)
    assert a.stdout == b.stdout != c.stdout
    unseeded = invoke("sample", files["lines"], "-n", 2)
    shown = int(unseeded.stderr.split("seed ")[1].split()[0])
    assert invoke("sample", files["lines"], "-n", 2, "--seed", shown).stdout == unseeded.stdout


def test_temperature_zero_and_top_k_one_are_greedy(files):
    greedy = invoke("sample", files["file"], "-t", 0, "-n", 3, "-l", 40)
    assert greedy.exit_code == 0
    # JSON, not stdout split on blank lines: a greedy text may itself hold "\n\n".
    texts = [r["text"] for r in json.loads(invoke("sample", files["file"], "-t", 0, "-n", 3, "-l", 40,
                                                  "--json").stdout)]
    assert len(texts) == 3 and len(set(texts)) == 1 and len(texts[0]) > 0
    top1 = invoke("sample", files["file"], "--top-k", 1, "-n", 3, "-l", 40, "--seed", 9)
    assert top1.stdout == greedy.stdout


def test_prime_is_printed_and_unknown_characters_warn(files):
    result = invoke("sample", files["lines"], "-p", "the zq", "--seed", 0, "-n", 2)
    assert result.exit_code == 0
    assert all(line.startswith("the zq") for line in result.stdout.splitlines())
    warnings = [line for line in result.stderr.splitlines() if "outside the vocabulary" in line]
    assert len(warnings) == 1 and "'q'" in warnings[0] and "'z'" in warnings[0]
    assert_one_line_error(invoke("sample", files["lines"], "-p", "the zq", "--strict"), code=2)


def test_stop_string_and_length(files):
    records = json.loads(invoke("sample", files["file"], "--stop", "e", "-n", 20, "-l", 30, "--seed", 2,
                                "--json").stdout)
    for r in records:
        assert "e" not in r["text"][:-1]
        assert r["text"].endswith("e") or len(r["text"]) == 30
    assert any(r["text"].endswith("e") for r in records)
    empty = invoke("sample", files["file"], "-l", 0, "--seed", 0)
    assert empty.exit_code == 0 and empty.stdout == ""


def test_stop_at_eos_in_file_mode(files):
    free = json.loads(invoke("sample", files["file"], "-n", 30, "-l", 60, "--seed", 5, "--json").stdout)
    assert not any(r["ended_at_eos"] for r in free) and all(len(r["text"]) == 60 for r in free)
    stopped = json.loads(invoke("sample", files["file"], "-n", 30, "-l", 60, "--seed", 5, "--json",
                                "--stop-at-eos").stdout)
    assert any(r["ended_at_eos"] for r in stopped)


def test_beam_search(files):
    result = invoke("sample", files["lines"], "--beam", 4, "-p", "the ", "-n", 2)
    assert result.exit_code == 0, result.output
    assert result.stdout == invoke("sample", files["lines"], "--beam", 4, "-p", "the ", "-n", 2).stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("the ") for line in lines)
    records = json.loads(invoke("sample", files["lines"], "--beam", 4, "-p", "the ", "-n", 4,
                                "--json").stdout)
    assert len(records) == 4
    assert [r["logprob"] for r in records] == sorted((r["logprob"] for r in records), reverse=True)


def test_sampling_options_with_beam_are_reported_as_ignored(files):
    result = invoke("sample", files["lines"], "--beam", 2, "-p", "the ", "-t", 0.5, "--seed", 3)
    assert result.exit_code == 0
    assert "--temperature, --seed ignored" in result.stderr
    assert result.stdout == invoke("sample", files["lines"], "--beam", 2, "-p", "the ").stdout


def test_novelty(files):
    result = invoke("sample", files["lines"], "-n", 10, "--seed", 0, "-t", 0.5, "--novelty", files["corpus"],
                    "--json")
    records = json.loads(result.stdout)
    for r in records:
        assert r["novel"] == (r["text"] not in SENTENCES)
    assert "novel:" in result.stderr and "of 10 samples" in result.stderr


@pytest.mark.parametrize("args", [
    ["-t", "-1"], ["-t", "nan"], ["-t", "inf"], ["--top-p", "0"], ["--top-p", "1.5"], ["--top-p", "nan"],
    ["--top-k", "0"], ["--top-k", "1000"], ["-n", "0"], ["-l", "-3"], ["--beam", "3"],
    ["--beam", "0", "-p", "a"], ["--stop", ""],
])
def test_bad_sample_values_are_usage_errors(files, args):
    assert_one_line_error(invoke("sample", files["lines"], *args), code=2)


@pytest.mark.parametrize("which", ["damaged", "truncated", "text"])
@pytest.mark.parametrize("command", ["sample", "info", "perplexity", "score"])
def test_damaged_or_foreign_checkpoints_fail_cleanly(files, which, command):
    extra = {"perplexity": [files["corpus"]], "score": ["a pear"]}.get(command, [])
    assert_one_line_error(invoke(command, files[which], *extra), code=1)


@pytest.mark.parametrize("command", ["sample", "info", "perplexity", "score"])
def test_missing_checkpoint_fails_cleanly(files, command):
    extra = {"perplexity": [files["corpus"]], "score": ["a pear"]}.get(command, [])
    assert_one_line_error(invoke(command, files["root"] / "nope.safetensors", *extra))


# ---------------------------------------------------------------------------------------------- perplexity


def test_uniform_model_has_perplexity_equal_to_vocabulary_size(files):
    result = invoke("perplexity", files["uniform"], files["corpus"], "--json")
    assert result.exit_code == 0, result.output
    total = json.loads(result.stdout)["total"]
    assert total["perplexity"] == pytest.approx(files["vocab"].size, rel=1e-6)
    assert total["bits_per_char"] == pytest.approx(math.log2(files["vocab"].size), rel=1e-6)


def test_perplexity_is_exact_by_default_and_matches_score_ids(files):
    result = invoke("perplexity", files["lines"], files["corpus"], "--json")
    data = json.loads(result.stdout)
    assert data["mode"] == "exact"
    ckpt = load_checkpoint(files["lines"])
    ids = prepare_corpus(files["corpus"], eos_mode="lines", vocab=ckpt.vocab).ids
    expected = score_ids(ckpt.params, ckpt.config, ids)
    assert data["total"]["chars"] == data["total"]["tokens"] == expected.n_scored
    assert data["total"]["nats_per_char"] == pytest.approx(expected.nats_per_char, abs=1e-6)
    assert data["total"]["nats_per_token"] == data["total"]["nats_per_char"]  # a character is a token
    table = invoke("perplexity", files["lines"], files["corpus"], files["corpus"])
    assert "exact" in table.stderr and "all files" in table.stdout and "Traceback" not in table.output


def test_perplexity_streams_mode_is_reported_and_close(files):
    exact = json.loads(invoke("perplexity", files["lines"], files["corpus"], "--json").stdout)["total"]
    fast = json.loads(invoke("perplexity", files["lines"], files["corpus"], "--json", "--streams", 4,
                             "--burn-in", 64).stdout)
    assert fast["mode"] == "streams" and fast["streams"] == 4
    assert fast["total"]["nats_per_char"] == pytest.approx(exact["nats_per_char"], abs=0.05)
    text = invoke("perplexity", files["lines"], files["corpus"], "--streams", 4)
    assert "4 parallel streams" in text.stderr


def test_perplexity_counts_unknown_characters(files, tmp_path):
    odd = tmp_path / "odd.txt"
    odd.write_text("the pear xyz\n")
    total = json.loads(invoke("perplexity", files["lines"], odd, "--json").stdout)["total"]
    assert total["unk"] == 3 and total["chars"] == 13 == total["tokens"]


def test_perplexity_show_prints_legend_and_text(files):
    result = invoke("perplexity", files["lines"], files["corpus"], "--show")
    assert result.exit_code == 0
    assert "surprisal" in result.stdout and "the apple and pear salad" in result.stdout


def test_show_colours_by_surprisal(files):
    text = coloured(files["vocab"], np.array([2, 3, EOS]), np.array([0.1, 5.0, 20.0]), "\n")
    styles = [str(span.style) for span in text.spans]
    assert styles == [surprisal_style(0.1 / math.log(2)), surprisal_style(5.0 / math.log(2)),
                      surprisal_style(20 / math.log(2))]
    assert len(set(styles)) == 3


@pytest.mark.parametrize("args", [["--streams", "0"], ["--burn-in", "-1"]])
def test_bad_perplexity_values_are_usage_errors(files, args):
    assert_one_line_error(invoke("perplexity", files["lines"], files["corpus"], *args), code=2)


def test_perplexity_of_missing_or_empty_file_fails_cleanly(files, tmp_path):
    assert_one_line_error(invoke("perplexity", files["lines"], tmp_path / "none.txt"), code=2)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert_one_line_error(invoke("perplexity", files["lines"], empty), code=1)


# ---------------------------------------------------------------------------------------------- score, info


def test_score_ranks_a_likely_sentence_first(files):
    result = invoke("score", files["lines"], "the apple and pair salad", "the apple and pear salad", "--json")
    records = json.loads(result.stdout)
    assert [r["text"] for r in records] == ["the apple and pear salad", "the apple and pair salad"]
    assert records[0]["logprob"] > records[1]["logprob"] and records[0]["rank"] == 1
    assert records[0]["chars"] == len("the apple and pear salad") + 1


def test_score_reads_candidates_from_stdin(files):
    result = invoke("score", files["lines"], input="the apple and pair salad\n\nthe apple and pear salad\n")
    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if "salad" in line]
    assert len(rows) == 2 and "pear" in rows[0] and "pair" in rows[1]
    assert_one_line_error(invoke("score", files["lines"], input=""), code=2)


def test_info(files):
    data = json.loads(invoke("info", files["run"], "--json").stdout)
    assert data["model"]["cell"] == "lstm" and data["vocab"]["eos_mode"] == "lines"
    params = data["model"]["parameters"]
    V, H = files["vocab"].size, 32
    assert params == V * 4 * H + H * 4 * H + 4 * H + H * V + V
    assert data["training"]["step"] == 70
    assert data["training"]["best_val_bits"] == pytest.approx(0.9 / math.log(2))
    assert data["vocab"]["chars"] == "".join(files["vocab"].chars)
    assert data["vocab"]["kind"] == "char" and data["vocab"]["lowercase"] is False
    text = invoke("info", files["run"])
    assert "verified" in text.stdout and f"{params:,}" in text.stdout
    assert "characters" in text.stdout and "nats/char" in text.stdout and "token" not in text.stdout


def test_perplexity_agrees_with_the_trainers_validation_loss(tmp_path):
    text = (REAL_TEXT.read_text() * 2)
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text(text[:6000])
    val.write_text(text[6000:7500])
    run = tmp_path / "run"
    result = invoke("train", train, "--out", run, "--hidden", 16, "--layers", 1, "--seq-len", 16,
                    "--batch", 4, "--steps", 10, "--val-file", val)
    assert result.exit_code == 0, result.output
    best = load_checkpoint(run / "best.safetensors").train
    assert best["best_val_final_mode"] == "exact"
    total = json.loads(invoke("perplexity", run, val, "--json").stdout)["total"]
    assert total["nats_per_char"] == pytest.approx(best["best_val_final"], abs=1e-4)
    info = json.loads(invoke("info", run, "--json").stdout)["training"]
    assert info["final_val_nats"] == best["best_val_final"] and info["final_val_mode"] == "exact"
