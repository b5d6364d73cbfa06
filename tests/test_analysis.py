"""Analysis functions: checkpoint description, score summaries, surprisal, candidate ranking, novelty.

Every result must survive `json.dumps`: the explorer page serves them as they are.
"""

import json
import math

import numpy as np
import pytest
from inference_models import write_checkpoint

from charlm.models.config import ModelConfig
from charlm.models.lm import init_params
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.description import describe
from charlm.tasks.lm.analysis import (
    SURPRISAL_BINS,
    longest_shared,
    novelty,
    rank_candidates,
    score_summary,
    surprisal,
    surprisal_bin,
)
from charlm.tasks.lm.scoring import ScoreResult
from charlm.text.tokenizer import EOS, UNK, Vocab


@pytest.fixture
def uniform():
    """A model whose every prediction is uniform over the V ids: each target costs ln V nats."""
    vocab = Vocab(" abc")
    cfg = ModelConfig("gru", vocab.size, 4, layers=1)
    params = init_params(cfg, np.random.default_rng(0))
    params["head.W"][:] = 0.0
    params["head.b"][:] = 0.0
    return params, cfg, vocab


# ---------------------------------------------------------------------------------------------- checkpoints


def test_describe_is_json_and_counts_parameters(uniform, tmp_path):
    params, cfg, vocab = uniform
    path = write_checkpoint(tmp_path / "m.safetensors", params, cfg, vocab, eos_mode="lines",
                            train={"step": 5, "best_val": 2.0, "best_step": 4})
    d = json.loads(json.dumps(describe(load_checkpoint(path))))
    assert d["model"]["cell"] == "gru" and d["model"]["parameters"] == sum(p.size for p in params.values())
    assert d["vocab"] == {"size": vocab.size, "specials": ["<EOS>", "<UNK>"], "eos_mode": "lines",
                          "encoding": "utf-8", "kind": "char", "lowercase": False, "chars": " abc"}
    assert d["training"]["step"] == 5 and d["training"]["best_step"] == 4
    assert d["training"]["best_val_bits"] == pytest.approx(2.0 / math.log(2))
    assert d["training"]["epoch"] is None and d["training"]["final_val_mode"] is None
    assert d["has_optimizer_state"] is False


# ---------------------------------------------------------------------------------------------- scores


def test_score_summary_of_a_score_and_of_nothing():
    s = score_summary(ScoreResult(nll_sum=8 * math.log(4), n_scored=8, n_unk=2))
    assert s == pytest.approx({"chars": 8, "unk": 2, "unk_rate": 0.25, "nats_per_char": math.log(4),
                               "bits_per_char": 2.0, "perplexity": 4.0, "tokens": 8,
                               "nats_per_token": math.log(4)})
    empty = score_summary(ScoreResult(0.0, 0, 0))
    assert empty["chars"] == 0 and empty["unk_rate"] == 0.0 and math.isnan(empty["perplexity"])
    assert math.isnan(empty["nats_per_char"]) and math.isnan(empty["nats_per_token"])


def test_score_summary_of_tokens_that_stand_for_several_characters():
    # 4 word targets (one <UNK>) standing for 20 characters: per-token and per-character figures differ
    s = json.loads(json.dumps(score_summary(ScoreResult(nll_sum=4 * math.log(8), n_scored=4, n_unk=1,
                                                        n_chars=20))))
    assert s["tokens"] == 4 and s["chars"] == 20 and isinstance(s["chars"], int)
    assert s["unk_rate"] == 0.25  # of the tokens
    assert s["nats_per_token"] == pytest.approx(math.log(8)) and s["perplexity"] == pytest.approx(8.0)
    assert s["nats_per_char"] == pytest.approx(4 * math.log(8) / 20)
    assert s["bits_per_char"] == pytest.approx(4 * 3 / 20)
    estimated = score_summary(ScoreResult(1.0, 2, 1, n_chars=7.5))
    assert estimated["chars"] == 7.5


def test_surprisal_bins_are_half_open_with_an_open_last_bin():
    assert [surprisal_bin(b) for b in (0.0, 0.999, 1.0, 2.9, 3.0, 9.99, 10.0, 1e9, math.inf)] == \
        [0, 0, 1, 1, 2, 3, 4, 4, 4]
    assert surprisal_bin(SURPRISAL_BINS[-1]) == len(SURPRISAL_BINS)


def test_surprisal_gives_each_targets_text_and_bits():
    vocab = Vocab("ab")
    targets = np.array([2, UNK, EOS, 3])
    nll = np.array([math.log(2), 0.0, 3 * math.log(2), 0.5])
    records = json.loads(json.dumps(surprisal(vocab, targets, nll, eos_text="\n\n")))
    assert [r["id"] for r in records] == [2, UNK, EOS, 3]
    assert [r["text"] for r in records] == ["a", "\ufffd", "\n\n", "b"]
    assert [r["bits"] for r in records] == pytest.approx([1.0, 0.0, 3.0, 0.5 / math.log(2)])
    assert surprisal(vocab, targets[:0], nll[:0]) == []
    with pytest.raises(ValueError):
        surprisal(vocab, targets, nll[:2])


def test_rank_candidates_under_a_uniform_model(uniform):
    params, cfg, vocab = uniform
    warnings = []
    records = json.loads(json.dumps(rank_candidates(params, cfg, vocab, ["abc", "a", "cab", "zz"],
                                                    warn=warnings.append)))
    # every target costs ln V, so shorter documents rank first and equal lengths keep their given order
    assert [r["text"] for r in records] == ["a", "zz", "abc", "cab"]
    assert [r["rank"] for r in records] == [1, 2, 3, 4]
    assert [r["chars"] for r in records] == [2, 3, 4, 4]  # the closing <EOS> is a target
    for r in records:
        assert r["logprob"] == pytest.approx(-r["chars"] * math.log(vocab.size))
        assert r["nats_per_char"] == pytest.approx(math.log(vocab.size))
        assert r["bits_per_char"] == pytest.approx(math.log2(vocab.size))
        assert r["tokens"] == r["chars"] and r["nats_per_token"] == r["nats_per_char"]
    assert len(warnings) == 1 and "'z'" in warnings[0] and "<UNK>" in warnings[0]
    rank_candidates(params, cfg, vocab, ["abc"], warn=warnings.append)
    assert len(warnings) == 1  # nothing unknown, no warning


# ---------------------------------------------------------------------------------------------- novelty


def test_novelty_in_lines_mode_is_whole_line_membership():
    corpus = "anna\nbob\n\n  \ncarla\n"
    found = novelty(["bob", "bobby", "ann"], corpus, "lines")
    assert [f.novel for f in found] == [False, True, True]


def test_novelty_in_paragraphs_mode_is_whole_paragraph_membership():
    corpus = "one\ntwo\n\nthree\n\n\nfour\n"
    found = novelty(["one\ntwo", "one", "three", "two\n\nthree"], corpus, "paragraphs")
    assert [f.novel for f in found] == [False, True, False, True]
    assert found[1].longest_shared == 3


def test_novelty_in_file_mode_uses_the_longest_shared_substring():
    corpus = "the cat sat on the mat"
    found = novelty(["cat sat", "a dog sat on it", ""], corpus, "file")
    assert [f.novel for f in found] == [False, True, False]
    assert found[1].longest_shared == len(" sat on ")
    assert json.loads(json.dumps([f.to_json() for f in found]))[1] == {"novel": True, "longest_shared": 8}


def test_longest_shared_matches_a_brute_force_search():
    rng = np.random.default_rng(5)
    for _ in range(200):
        sample = "".join(rng.choice(list("abc"), size=rng.integers(0, 9)))
        corpus = "".join(rng.choice(list("abcd"), size=rng.integers(0, 12)))
        expected = max((j - i for i in range(len(sample)) for j in range(i, len(sample) + 1)
                        if sample[i:j] in corpus), default=0)
        assert longest_shared(sample, corpus) == expected, (sample, corpus)
