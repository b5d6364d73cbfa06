"""`charlm train --tokens word`: word-level runs end to end, their figures, and the flags only they take."""

import json
import math

import numpy as np
import pytest
from helpers import invoke

from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.registry import train
from charlm.training.options import TrainOptions
from charlm.training.recipe import apply_recipe
from charlm.training.recipe_rules import (
    CHAR_TRAINING,
    MIN_LR_RATIO_UNSETTLED,
    SHORT_CHUNK,
    TOKENS_PER_UPDATE,
    WORD_RECIPE,
    CorpusStats,
)

SUBJECTS = ["the cat", "a dog", "my friend", "the old king", "her sister"]
VERBS = ["sees", "likes", "follows", "hears"]
OBJECTS = ["the bird", "a ship", "the river", "his horse", "our garden"]


def grammar_text(lines: int, seed: int = 0) -> str:
    """Sentences of a small grammar: subject verb object, a comma or 'and' sometimes, a full stop."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(lines):
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        if rng.random() < 0.3:
            sentence += f", and {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        out.append(sentence.capitalize() + ".")
    return "\n".join(out) + "\n"


@pytest.fixture
def grammar(tmp_path):
    path = tmp_path / "grammar.txt"
    path.write_text(grammar_text(600), encoding="utf-8")
    return path


def test_a_word_model_learns_a_generated_grammar(tmp_path, grammar):
    # Every sentence is 8 or 16 words and marks from small sets: the next token is one of at most 5
    # choices (ln 5 = 1.61 nats), and after 'sees'/'likes'/... one of 5 objects; a unigram model needs
    # about ln(V) - (what frequency gives) ~ 2.7 nats. Learning the grammar (with the word recipe: SGD at lr
    # 20, clipped at 0.25) brings it well under 1.2.
    opts = TrainOptions(corpus=str(grammar), out=str(tmp_path / "run"), tokens="word", eos="lines", hidden=48,
                        layers=1, batch=8, seq_len=16, steps=300, eval_every=150, warmup=10,
                        dropout=0.0)
    result = train(opts)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.vocab.kind == "word" and ckpt.config.embed == 48
    assert result.tokens == "word"
    assert result.best_val_loss < 1.2
    # bits/char divides the same total by the characters the tokens stand for (about 4-5 per token here)
    assert 0.1 < result.best_val_bpc < result.best_val_loss / math.log(2) / 3


def test_word_mode_json_reports_per_token_and_per_char(tmp_path, grammar):
    out = tmp_path / "run"
    result = invoke("train", grammar, "--tokens", "word", "--eos", "lines", "--out", out, "--hidden", 16,
                    "--layers", 1, "--batch", 4, "--seq-len", 8, "--steps", 20, "--eval-every", 10, "--json", "-q")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if '"recipe"' not in line]
    assert all(r["tokens"] == "word" for r in records)
    done = records[-1]
    assert done["best_val_mode"] == "exact"
    ckpt = load_checkpoint(out)
    assert ckpt.vocab.kind == "word"
    # the exact final score, as charlm perplexity computes it on the same held-out documents
    assert done["best_val_bpc"] < done["best_val_loss"] / math.log(2)


def test_tie_needs_embed_equal_to_hidden(tmp_path, grammar):
    result = invoke("train", grammar, "--tokens", "word", "--tie", "--embed", 8, "--hidden", 16, "--steps", 2,
                    "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2
    assert "--tie" in result.output and "--embed 8" in result.output and "--hidden 16" in result.output
    assert not (tmp_path / "run").exists()


def test_tied_word_model_trains_and_has_no_separate_output_matrix(tmp_path, grammar):
    out = tmp_path / "run"
    result = invoke("train", grammar, "--tokens", "word", "--tie", "--hidden", 16, "--layers", 1, "--batch", 4,
                    "--seq-len", 8, "--steps", 10, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out)
    assert ckpt.config.tie and "head.W" not in ckpt.params and ckpt.params["embed.W"].shape[1] == 16


def test_init_from_across_tokenizer_kinds_is_refused(tmp_path, grammar):
    char_run = tmp_path / "char"
    assert invoke("train", grammar, "--hidden", 8, "--layers", 1, "--batch", 4, "--seq-len", 8, "--steps", 2,
                  "--out", char_run, "-q").exit_code == 0
    result = invoke("train", grammar, "--tokens", "word", "--init-from", char_run, "--steps", 2,
                    "--out", tmp_path / "word", "-q")
    assert result.exit_code == 2
    assert "char-level" in result.output and "--tokens word" in result.output
    assert not (tmp_path / "word").exists()


def test_fine_tuning_a_word_model_keeps_its_kind_without_asking(tmp_path, grammar):
    word_run = tmp_path / "word"
    common = ["--hidden", 8, "--layers", 1, "--batch", 4, "--seq-len", 8, "--steps", 2, "-q"]
    assert invoke("train", grammar, "--tokens", "word", "--out", word_run, *common).exit_code == 0
    result = invoke("train", grammar, "--init-from", word_run, "--out", tmp_path / "tuned", *common)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "tuned").vocab == load_checkpoint(word_run).vocab


def test_resume_refuses_another_tokenizer(tmp_path, grammar):
    out = tmp_path / "run"
    common = ["--hidden", 8, "--layers", 1, "--batch", 4, "--seq-len", 8, "-q"]
    assert invoke("train", grammar, "--tokens", "word", "--out", out, "--steps", 2, *common).exit_code == 0
    result = invoke("train", grammar, "--tokens", "char", "--out", out, "--resume", "--steps", 4, *common)
    assert result.exit_code == 1
    assert "--tokens char (was word)" in result.output


def test_words_take_the_word_recipe_whatever_the_budget_and_explicit_options_win():
    def filled(**options):
        opts = TrainOptions(corpus="c.txt", **options)
        stats = CorpusStats(tokens=10**6, documents=1, vocab=10_000 if opts.tokens == "word" else 60, kind=opts.tokens)
        return apply_recipe(opts, stats)[0]

    for limits in ({"steps": 1}, {"time_budget": 300.0}, {"time_budget": 3600.0}):
        word = filled(tokens="word", **limits)
        assert {name: getattr(word, name) for name in WORD_RECIPE} == WORD_RECIPE
        assert word.embed == word.hidden
    char = filled(steps=1)
    assert {name: getattr(char, name) for name in CHAR_TRAINING} == CHAR_TRAINING
    assert char.min_lr_ratio == MIN_LR_RATIO_UNSETTLED  # one step is far below the passes a decay to 0 needs
    assert (char.seq_len, char.batch) == (SHORT_CHUNK, TOKENS_PER_UPDATE // SHORT_CHUNK)  # the default width
    assert char.embed == 0 and char.tie is False
    mine = filled(tokens="word", steps=1, hidden=64, optimizer="adam", lr=1e-3, tie=True, batch=8)
    assert (mine.hidden, mine.embed, mine.optimizer, mine.lr, mine.tie, mine.batch) == (64, 64, "adam", 1e-3, True, 8)
    assert (mine.seq_len, mine.clip) == (WORD_RECIPE["seq_len"], WORD_RECIPE["clip"])  # the rest of the recipe
    narrow = filled(tokens="word", embed=32, steps=1)
    assert narrow.embed == 32 and narrow.hidden == WORD_RECIPE["hidden"]

