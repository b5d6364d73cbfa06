"""Scoring: exact vs a naive loop, uniform models, streams with burn-in, files in pieces, documents."""

import math
from pathlib import Path

import numpy as np
import pytest
from inference_models import train_tiny

from charlm.errors import ConfigError
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state, step_logits
from charlm.tasks.choosing import log_softmax
from charlm.tasks.lm.scoring import score_documents, score_file, score_ids
from charlm.text.cache import prepare_corpus
from charlm.text.tokenizer import EOS, Vocab

REAL_TEXT = Path(__file__).resolve().parents[1] / "charlm" / "text" / "tokenizer.py"


def random_model(cell="lstm", V=9, H=12, layers=2, dtype="float64", seed=0):
    cfg = ModelConfig(cell, V, H, layers=layers, dtype=dtype)
    return init_params(cfg, np.random.default_rng(seed)), cfg


def naive_nll(params, cfg, ids):
    """Per-target nll by stepping one character at a time from the zero state."""
    state, out = init_state(cfg, 1), []
    for x, y in zip(ids[:-1], ids[1:], strict=True):
        logits, state = step_logits(params, cfg, np.array([x]), state)
        out.append(-log_softmax(logits)[0, y])
    return np.array(out)


@pytest.fixture(scope="module")
def real():
    """A tiny LSTM trained briefly on real text (a source file), and that text's ids."""
    text = REAL_TEXT.read_text()
    vocab = Vocab(sorted(set(text)))
    ids = np.concatenate([[EOS], vocab.encode(text), [EOS]])
    params, cfg = train_tiny(ids, vocab.size, steps=60, seq_len=64, batch=32, lr=2e-2)
    return params, cfg, vocab, ids


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_exact_equals_a_naive_per_character_loop(cell):
    params, cfg = random_model(cell)
    ids = np.random.default_rng(1).integers(0, cfg.vocab_size, 150)
    result = score_ids(params, cfg, ids, chunk_len=16, per_char=True)
    naive = naive_nll(params, cfg, ids)
    assert result.n_scored == 149
    np.testing.assert_allclose(result.nll, naive, rtol=1e-10)
    assert result.nll_sum == pytest.approx(naive.sum(), rel=1e-12)


def test_chunk_length_does_not_change_the_score():
    params, cfg = random_model()
    ids = np.random.default_rng(2).integers(0, cfg.vocab_size, 300)
    sums = [score_ids(params, cfg, ids, chunk_len=c).nll_sum for c in (1, 7, 64, 1000)]
    assert max(sums) - min(sums) < 1e-9


@pytest.mark.parametrize("streams", [1, 4])
def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size(streams):
    params, cfg = random_model(V=13, dtype="float32")
    params["head.W"][:] = 0.0
    params["head.b"][:] = 0.0
    ids = np.random.default_rng(3).integers(0, 13, 500)
    result = score_ids(params, cfg, ids, streams=streams, burn_in=10)
    assert result.perplexity == pytest.approx(13.0, rel=1e-6)
    assert result.bits_per_char == pytest.approx(math.log2(13), rel=1e-6)


def test_unk_targets_are_counted():
    params, cfg = random_model()
    ids = np.array([0, 2, 1, 3, 1, 1, 0])
    assert score_ids(params, cfg, ids).n_unk == 3
    assert score_ids(params, cfg, ids[1:]).n_unk == 3  # the first id is read, never scored
    assert score_ids(params, cfg, ids, streams=3).n_unk == 3


def test_streams_pieces_are_exact_scores_of_their_window():
    # piece b scores targets starts[b]..; it must equal exact scoring of ids[start - 1 - W:] from zero state
    params, cfg = random_model()
    ids = np.random.default_rng(4).integers(0, cfg.vocab_size, 401)
    result = score_ids(params, cfg, ids, streams=4, burn_in=30, chunk_len=8, per_char=True)
    assert (result.streams, result.burn_in, result.n_scored) == (4, 30, 400)
    exact = score_ids(params, cfg, ids, per_char=True).nll
    np.testing.assert_allclose(result.nll[:100], exact[:100], rtol=1e-10)  # the first piece is exact
    for b in range(1, 4):
        start = 1 + 100 * b
        window = score_ids(params, cfg, ids[start - 1 - 30:start + 100], per_char=True).nll[30:]
        np.testing.assert_allclose(result.nll[100 * b:100 * b + 100], window, rtol=1e-10)


def test_streams_cap_burn_in_and_uneven_last_piece():
    params, cfg = random_model()
    ids = np.random.default_rng(5).integers(0, cfg.vocab_size, 50)
    result = score_ids(params, cfg, ids, streams=8, burn_in=100, per_char=True)
    assert result.n_scored == 49 and result.burn_in == 7 and not np.isnan(result.nll).any()
    assert result.nll_sum == pytest.approx(result.nll.sum())
    few = score_ids(params, cfg, ids[:3], streams=64)
    assert few.n_scored == 2


@pytest.mark.slow
def test_streams_with_burn_in_are_close_to_exact_on_real_text(real):
    params, cfg, _, ids = real
    exact = score_ids(params, cfg, ids)
    fast = score_ids(params, cfg, ids, streams=16, burn_in=64)
    cold = score_ids(params, cfg, ids, streams=16, burn_in=0)
    assert exact.nats_per_char < 2.9  # the model has learned something (uniform: ln V ~ 4.4)
    assert fast.n_scored == exact.n_scored
    assert abs(fast.nats_per_char - exact.nats_per_char) < 2e-3
    assert abs(fast.nats_per_char - exact.nats_per_char) < abs(cold.nats_per_char - exact.nats_per_char)


def test_bad_modes_are_config_errors():
    params, cfg = random_model()
    ids = np.zeros(10, dtype=int)
    with pytest.raises(ConfigError):
        score_ids(params, cfg, ids, streams=0)
    with pytest.raises(ConfigError):
        score_ids(params, cfg, ids, burn_in=-1)


@pytest.mark.parametrize("eos_mode", ["file", "lines"])
def test_file_in_small_pieces_equals_the_whole_stream(tmp_path, eos_mode):
    text = "ab ba\ncab\n\nbbba ab\n" * 20
    path = tmp_path / "t.txt"
    path.write_text(text)
    vocab = Vocab(" abc")
    params, cfg = random_model(V=vocab.size)
    ids = prepare_corpus(path, eos_mode=eos_mode, vocab=vocab).ids
    whole = score_ids(params, cfg, ids)
    seen = []
    pieces = score_file(params, cfg, vocab, path, eos_mode=eos_mode, chunk_chars=7, chunk_len=5,
                        on_scored=lambda targets, nll: seen.append((targets.copy(), nll.copy())))
    assert pieces.n_scored == whole.n_scored == len(ids) - 1
    assert pieces.nll_sum == pytest.approx(whole.nll_sum, rel=1e-12)
    assert np.array_equal(np.concatenate([t for t, _ in seen]), ids[1:])
    streams = score_file(params, cfg, vocab, path, eos_mode=eos_mode, streams=4, burn_in=20)
    assert streams.streams == 4 and streams.n_scored == whole.n_scored


@pytest.mark.parametrize("streams", [1, 3])
def test_a_files_characters_are_counted_from_its_documents(tmp_path, streams):
    # lines mode drops blank lines: characters are those of the documents plus one end each, and for a
    # character vocabulary that is one per target, <UNK> targets included
    path = tmp_path / "t.txt"
    path.write_text("ab ba\n\n  \ncab z\nbbba ab\n" * 5)
    vocab = Vocab(" abc")
    params, cfg = random_model(V=vocab.size)
    result = score_file(params, cfg, vocab, path, eos_mode="lines", streams=streams, burn_in=4)
    docs = ["ab ba", "cab z", "bbba ab"] * 5
    assert result.n_chars == sum(map(len, docs)) + len(docs) == result.n_scored
    assert result.n_unk == 5
    assert result.nats_per_char == result.nats_per_token == pytest.approx(result.nll_sum / result.n_scored)
    assert result.perplexity == pytest.approx(math.exp(result.nats_per_token))


def test_score_ids_counts_characters_with_the_vocabulary():
    params, cfg = random_model(V=6)
    vocab = Vocab("abcd")
    ids = np.array([EOS, 2, 3, 1, 4, EOS, 5, EOS])
    plain = score_ids(params, cfg, ids)
    counted = score_ids(params, cfg, ids, vocab=vocab)
    assert plain.n_chars == counted.n_chars == 7 == vocab.char_count(ids)

    class Doubling:
        """A vocabulary whose every id stands for two characters."""

        def char_count(self, ids):
            return 2.0 * (len(ids) - 1)

    doubled = score_ids(params, cfg, ids, vocab=Doubling(), streams=2)
    assert doubled.n_chars == 14.0 and doubled.n_scored == 7
    assert doubled.bits_per_char == pytest.approx(doubled.nll_sum / 14 / math.log(2))
    assert doubled.nats_per_token == pytest.approx(doubled.nll_sum / 7)


@pytest.mark.slow
def test_documents_are_scored_from_the_zero_state(real):
    params, cfg, vocab, _ = real
    texts = ["def encode(self)", "x", "return self.size", ""]
    docs = [np.concatenate([[EOS], vocab.encode(t), [EOS]]) for t in texts]
    totals = score_documents(params, cfg, docs, batch=3, chunk_len=5)
    for d, total in zip(docs, totals, strict=True):
        assert total == pytest.approx(score_ids(params, cfg, d).nll_sum, rel=1e-5)


@pytest.mark.slow
def test_a_trained_model_prefers_text_like_its_corpus(real):
    params, cfg, vocab, _ = real
    likely = "        return self.size"
    unlikely = "        rteurn slef.szie"
    docs = [np.concatenate([[EOS], vocab.encode(t), [EOS]]) for t in (likely, unlikely)]
    totals = score_documents(params, cfg, docs)
    assert totals[0] < totals[1]
