"""The tagger and the bidirectional encoder: float64 gradient checks, a bidirectional layer against two
unidirectional ones run by hand, padding that changes nothing, and learning what only a later token tells."""

import numpy as np
import pytest

from charlm.engine import cells
from charlm.engine.optim import Adam
from charlm.errors import ConfigError
from charlm.models import tagger
from charlm.models.config import ModelConfig
from charlm.models.encoder import encoder_activations, encoder_forward, init_state, reversal
from charlm.models.gradcheck import check_model
from charlm.models.lm import init_params as lm_init_params
from charlm.models.lm import loss_and_grads as lm_loss_and_grads

CELLS = ["rnn", "gru-simple", "gru", "lstm"]
GRAD_CASES = [  # layers, embed, dropout, bidirectional, heads, T, B, H, V
    (1, 0, 0.0, True, (3,), 4, 3, 3, 5),
    (2, 0, 0.0, True, (2, 4), 3, 2, 3, 4),
    (2, 3, 0.3, True, (3,), 4, 2, 3, 5),
    (2, 0, 0.0, False, (3, 2), 4, 2, 3, 4),
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", GRAD_CASES)
def test_tagger_gradcheck_every_parameter(cell, case):
    layers, embed, dropout, bidirectional, heads, T, B, H, V = case
    cfg = ModelConfig(cell=cell, vocab_size=V, hidden=H, layers=layers, embed=embed, dropout=dropout,
                      bidirectional=bidirectional, heads=heads)
    results = check_model(cfg, seq_len=T, batch=B, seed=T * 10 + B, max_coords=12)
    assert [r.name for r in results] == list(tagger.param_shapes(cfg))
    assert any(r.name.startswith("layer.0.rev.") for r in results) == bidirectional
    failed = [(r.name, r.error) for r in results if not r.passed]
    assert not failed, failed


def test_gradcheck_catches_a_backward_that_forgets_to_reverse(monkeypatch):
    import charlm.models.encoder as encoder

    cfg = ModelConfig(cell="gru", vocab_size=4, hidden=3, layers=1, bidirectional=True, heads=(3,))
    assert all(r.passed for r in check_model(cfg, seq_len=4, batch=2, max_coords=12))
    original, calls = encoder._reversed, []

    def forward_only(values, rev):
        # a one-layer pass reverses four times: xp and a_out forward, then d_out and dxp backward
        calls.append(None)
        return original(values, rev) if len(calls) % 4 in (1, 2) else values.copy()

    monkeypatch.setattr(encoder, "_reversed", forward_only)
    assert not all(r.passed for r in check_model(cfg, seq_len=4, batch=2, max_coords=12))


@pytest.mark.parametrize("cell", CELLS)
def test_a_bidirectional_layer_is_two_unidirectional_layers_run_by_hand(cell):
    rng = np.random.default_rng(0)
    T, B, H, V = 6, 3, 4, 7
    cfg = ModelConfig(cell=cell, vocab_size=V, hidden=H, layers=1, bidirectional=True, heads=(2,),
                      dtype="float64")
    params = tagger.init_params(cfg, rng)
    x = rng.integers(0, V, (T, B))
    lengths = np.array([6, 4, 1])
    out, _, _ = encoder_forward(params, cfg, x, init_state(cfg, B), lengths=lengths)
    for b, n in enumerate(lengths):
        ids = x[:n, b]
        zero = init_state(cfg, 1)[0]
        fwd, _, _ = cells.sequence_forward(cell, (params["layer.0.Wx"][ids] + params["layer.0.b"])[:, None], zero,
                                           params["layer.0.Wh"])
        back, _, _ = cells.sequence_forward(cell, (params["layer.0.rev.Wx"][ids[::-1]]
                                                   + params["layer.0.rev.b"])[:, None], zero,
                                            params["layer.0.rev.Wh"])
        np.testing.assert_allclose(out[:n, b, :H], fwd[:, 0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out[:n, b, H:], back[::-1, 0], rtol=1e-12, atol=1e-12)


def test_padding_changes_no_real_step():
    rng = np.random.default_rng(1)
    cfg = ModelConfig(cell="lstm", vocab_size=6, hidden=5, layers=2, bidirectional=True, heads=(3,),
                      dtype="float64")
    params = tagger.init_params(cfg, rng)
    doc = rng.integers(0, 6, 4)
    alone = tagger.predict(params, cfg, doc[:, None], [4])[0]
    padded = np.concatenate([doc, rng.integers(0, 6, 3)])[:, None]
    with_padding = tagger.predict(params, cfg, padded, [4])[0]
    np.testing.assert_allclose(with_padding[:4], alone, rtol=1e-12)
    labels = [np.array([[0], [1], [2], [1], [-1], [-1], [-1]])]
    loss_padded, grads_padded = tagger.loss_and_grads(params, cfg, padded, labels, [4])
    loss_alone, grads_alone = tagger.loss_and_grads(params, cfg, doc[:, None], [labels[0][:4]], [4])
    assert loss_padded == pytest.approx(loss_alone, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(grads_padded[name], grads_alone[name], rtol=1e-10, atol=1e-14)


def test_reversal_is_an_involution_that_keeps_padding():
    rev = reversal([3, 1, 4], 4)
    np.testing.assert_array_equal(rev, [[2, 0, 3], [1, 1, 2], [0, 2, 1], [3, 3, 0]])
    cols = np.arange(3)[None, :]
    np.testing.assert_array_equal(rev[rev, cols], np.broadcast_to(np.arange(4)[:, None], (4, 3)))


def test_reverse_activations_are_in_the_streams_order():
    cfg = ModelConfig(cell="gru", vocab_size=5, hidden=3, bidirectional=True, heads=(2,), dtype="float64")
    params = tagger.init_params(cfg, np.random.default_rng(2))
    x = np.array([[1], [2], [3]])
    out, _, cache = encoder_forward(params, cfg, x, init_state(cfg, 1), lengths=[3])
    acts = encoder_activations(cfg, cache)
    np.testing.assert_array_equal(acts["layer.0.rev.a"], out[:, :, 3:])
    np.testing.assert_array_equal(acts["layer.0.a"], out[:, :, :3])


def test_a_language_model_cannot_be_bidirectional():
    cfg = ModelConfig(cell="lstm", vocab_size=5, hidden=3, bidirectional=True)
    params = lm_init_params(cfg, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="cannot be bidirectional"):
        lm_loss_and_grads(params, cfg, np.zeros((2, 1), int), np.zeros((2, 1), int), init_state(cfg, 1))


@pytest.mark.parametrize("bad", [
    {"lengths": [0, 3]}, {"lengths": [4, 3]}, {"labels": [np.full((3, 2), 5)]}, {"labels": []},
    {"labels": [np.zeros((2, 2), int)]},
])
def test_bad_inputs_are_config_errors(bad):
    cfg = ModelConfig(cell="rnn", vocab_size=5, hidden=3, bidirectional=True, heads=(3,))
    params = tagger.init_params(cfg, np.random.default_rng(0))
    args = {"x": np.zeros((3, 2), int), "labels": [np.zeros((3, 2), int)], "lengths": [3, 2], **bad}
    with pytest.raises(ConfigError):
        tagger.loss_and_grads(params, cfg, args["x"], args["labels"], args["lengths"])


def _train(cfg, docs, labels, steps=250, seed=0):
    params = tagger.init_params(cfg, np.random.default_rng(seed))
    opt = Adam(params)
    x = np.array(docs).T  # (T, B): equal lengths
    y = [np.array(labels).T]
    lengths = np.full(x.shape[1], x.shape[0])
    losses = []
    for _ in range(steps):
        loss, grads = tagger.loss_and_grads(params, cfg, x, y, lengths)
        opt.step(params, grads, 0.02)
        losses.append(loss)
    return params, losses


def test_only_the_bidirectional_tagger_learns_what_a_later_token_decides():
    """The lecture's case: whether the first token is "upper" (label 1) depends only on the last token of the
    document, which a left-to-right encoder has not read when it labels the first."""
    rng = np.random.default_rng(5)
    docs = rng.integers(2, 6, (64, 5))
    labels = np.full(docs.shape, -1)
    labels[:, 0] = (docs[:, -1] >= 4).astype(int)  # decided by the last token
    results = {}
    for bidirectional in (False, True):
        cfg = ModelConfig(cell="gru", vocab_size=6, hidden=8, bidirectional=bidirectional, heads=(2,))
        params, losses = _train(cfg, docs, labels)
        probs = tagger.predict(params, cfg, docs.T, np.full(64, 5))[0]
        results[bidirectional] = ((probs[0].argmax(axis=1) == labels[:, 0]).mean(), losses[-1])
    assert results[True][0] == 1.0 and results[True][1] < 0.05
    assert results[False][0] <= 0.75 and results[False][1] > 0.5  # no better than the label's base rate
