"""What a model shows as it reads a text (`charlm.tasks.lm.inspection`): surprisal and guesses against the
scorer, activations against stepping the model by hand, pattern masks and unit separation against brute force."""

import numpy as np
import pytest

from charlm.errors import ConfigError
from charlm.models.config import ModelConfig
from charlm.models.lm import forward_nll, init_params, init_state, step_logits
from charlm.tasks.lm.inspection import (
    CHUNK_LEN,
    Reading,
    find_units,
    pattern_mask,
    read_text,
    surprisal_view,
    unit_view,
)
from charlm.tasks.lm.scoring import LN2
from charlm.text.tokenizer import EOS, UNK, Vocab
from charlm.text.words import WordVocab

TEXT = 'He said, "quiet now." Then: "go on," and the rest.\n' * 14  # longer than one traced chunk


@pytest.fixture(scope="module", params=["lstm", "gru"])
def model(request):
    vocab = Vocab(sorted(set(TEXT)))
    cfg = ModelConfig(request.param, vocab.size, 12, layers=2)
    return init_params(cfg, np.random.default_rng(3)), cfg, vocab


def test_surprisal_is_the_models_nll_over_chunks(model):
    params, cfg, vocab = model
    assert len(TEXT) > CHUNK_LEN
    reading = read_text(params, cfg, vocab, TEXT)
    ids = vocab.encode(TEXT).astype(np.int64)
    inputs = np.concatenate([[EOS], ids[:-1]])
    nll, _ = forward_nll(params, cfg, inputs[:, None], ids[:, None], init_state(cfg, 1))
    np.testing.assert_allclose(reading.bits, nll[:, 0] / LN2, rtol=1e-4, atol=1e-5)
    assert reading.texts == list(TEXT) and reading.text == TEXT
    np.testing.assert_array_equal(reading.ids, ids)


def test_top_guesses_are_the_most_likely_tokens_in_order(model):
    params, cfg, vocab = model
    reading = read_text(params, cfg, vocab, TEXT[:80])
    state, logits = init_state(cfg, 1), None
    for i, token in enumerate(np.concatenate([[EOS], reading.ids[:-1]])):
        logits, state = step_logits(params, cfg, np.array([token]), state)
        probs = np.exp(logits[0] - logits[0].max())
        probs /= probs.sum()
        expected = np.argsort(-probs, kind="stable")[:5]
        np.testing.assert_array_equal(np.sort(reading.top_ids[i]), np.sort(expected))
        np.testing.assert_allclose(reading.top_probs[i], probs[reading.top_ids[i]], rtol=1e-4)
        assert np.all(np.diff(reading.top_probs[i]) <= 0)
        assert reading.bits[i] == pytest.approx(-np.log2(probs[reading.ids[i]]), rel=1e-4)


def test_units_are_the_states_after_each_token(model):
    params, cfg, vocab = model
    reading = read_text(params, cfg, vocab, TEXT[:40])
    state = init_state(cfg, 1)
    _, state = step_logits(params, cfg, np.array([EOS]), state)
    for i, token in enumerate(reading.ids):
        _, state = step_logits(params, cfg, np.array([token]), state)
        for layer in range(cfg.layers):
            np.testing.assert_allclose(reading.units["a"][i, layer], state[layer][0][0], rtol=1e-5, atol=1e-6)
            if cfg.cell == "lstm":
                np.testing.assert_allclose(reading.units["c"][i, layer], state[layer][1][0], rtol=1e-5, atol=1e-6)
    assert set(reading.units) == ({"a", "c"} if cfg.cell == "lstm" else {"a"})


def test_views_carry_the_reading(model):
    params, cfg, vocab = model
    reading = read_text(params, cfg, vocab, TEXT[:60])
    view = surprisal_view(reading, vocab)
    assert "".join(t["text"] for t in view["tokens"]) == TEXT[:60] and view["chars"] == 60
    assert view["bits_per_char"] == pytest.approx(reading.bits.sum() / 60)
    assert all(len(t["top"]) == 5 and t["top"][0][1] >= t["top"][-1][1] for t in view["tokens"])
    unit = unit_view(reading, layer=1, unit=4, kind="a")
    np.testing.assert_allclose(unit["values"], reading.units["a"][:, 1, 4], rtol=1e-6)
    assert (unit["low"], unit["high"]) == (-1.0, 1.0)
    with pytest.raises(ConfigError, match="no unit 12 in layer 0"):
        unit_view(reading, layer=0, unit=12, kind="a")
    if cfg.cell != "lstm":
        with pytest.raises(ConfigError, match="kind must be one of a"):
            unit_view(reading, layer=0, unit=0, kind="c")


def test_documents_end_with_the_mode_separator(model):
    params, cfg, vocab = model
    reading = read_text(params, cfg, vocab, "ab\ncd\n", eos_mode="lines")
    assert reading.texts == ["a", "b", "\n", "c", "d", "\n"]
    assert reading.ids[2] == EOS and reading.ids[5] == EOS


def test_unknown_characters_keep_their_text(model):
    params, cfg, vocab = model
    reading = read_text(params, cfg, vocab, "aé")
    assert reading.texts == ["a", "é"] and reading.ids[1] == UNK


def test_word_model_tokens_rebuild_the_text():
    vocab = WordVocab(["the", "cat", "sat", ".", " "])
    cfg = ModelConfig("lstm", vocab.size, 8, layers=1, embed=4)
    params = init_params(cfg, np.random.default_rng(0))
    reading = read_text(params, cfg, vocab, "the cat sat.")
    assert reading.text == "the cat sat." and len(reading.texts) == len(reading.ids) < 12
    assert reading.units["a"].shape == (len(reading.ids), 1, 8)


def test_pattern_mask_marks_tokens_inside_matches():
    texts = ["a", "bc", '"', "d", "ef", '"', "g"]
    np.testing.assert_array_equal(pattern_mask(texts, '"[^"]*"'), [0, 0, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(pattern_mask(texts, "c"), [0, 1, 0, 0, 0, 0, 0])  # part of a token
    np.testing.assert_array_equal(pattern_mask(texts, "x*"), [0] * 7)  # empty matches cover nothing
    np.testing.assert_array_equal(pattern_mask(texts, "de|g"), [0, 0, 0, 1, 1, 0, 1])  # across tokens
    with pytest.raises(ConfigError, match="not a regular expression"):
        pattern_mask(texts, "(")


def _reading(values: np.ndarray) -> Reading:
    n = len(values)
    return Reading(texts=["x"] * n, ids=np.zeros(n, dtype=np.int64), bits=np.zeros(n),
                   top_ids=np.zeros((n, 1), dtype=np.int64), top_probs=np.ones((n, 1)),
                   units={"a": values.astype(np.float32)})


def test_find_units_ranks_by_auc_against_brute_force():
    rng = np.random.default_rng(1)
    n = 60
    mask = rng.random(n) < 0.3
    values = rng.normal(size=(n, 2, 5))
    values[:, 1, 3] = mask + 0.1 * rng.normal(size=n)  # rises inside matches
    values[:, 0, 2] = -2.0 * mask + 0.1 * rng.normal(size=n)  # falls inside matches
    found = find_units(_reading(values), mask, top=10)
    assert {(u["layer"], u["unit"]) for u in found[:2]} == {(1, 3), (0, 2)}
    assert [u["score"] for u in found] == sorted((u["score"] for u in found), reverse=True)
    for u in found:
        column = values[:, u["layer"], u["unit"]]
        pos, neg = column[mask], column[~mask]
        auc = (pos[:, None] > neg[None, :]).mean()  # no ties in continuous data
        assert u["auc"] == pytest.approx(auc)
        assert u["score"] == pytest.approx(abs(2 * auc - 1))
        assert u["mean_in"] == pytest.approx(pos.mean(), rel=1e-5)
    assert found[0]["score"] == pytest.approx(1.0) and len(found) == 10


def test_find_units_refuses_a_mask_without_contrast():
    reading = _reading(np.zeros((4, 1, 2)))
    with pytest.raises(ConfigError, match="matches no token"):
        find_units(reading, np.zeros(4, dtype=bool))
    with pytest.raises(ConfigError, match="matches every token"):
        find_units(reading, np.ones(4, dtype=bool))
