"""The encoder–decoder network: float64 gradient checks of every piece (encoder, bridge, decoder, each attention
form, bidirectional and stacked, dropout), padding that gets exactly zero gradient, decoding one token at a
time that matches the teacher-forced forward, and a model that learns to reverse sequences."""

from dataclasses import replace

import numpy as np
import pytest

from charlm.engine.optim import make_optimizer
from charlm.errors import ConfigError
from charlm.models import seq2seq
from charlm.models.config import ATTENTIONS, ModelConfig
from charlm.models.gradcheck import check_model

CASES = [("lstm", attention, bidirectional) for attention in ATTENTIONS for bidirectional in (False, True)
         if not (attention == "dot" and bidirectional)]
CASES += [(cell, "general", False) for cell in ("rnn", "gru", "gru-simple")] + [("gru", "additive", True)]


def config(cell="lstm", attention="general", bidirectional=False, **kw):
    base = dict(cell=cell, vocab_size=7, hidden=4, layers=2, embed=3, dropout=0.2, bidirectional=bidirectional,
                target_vocab=6, attention=attention)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize(("cell", "attention", "bidirectional"), CASES)
def test_gradients_match_finite_differences(cell, attention, bidirectional):
    cfg = config(cell, attention, bidirectional)
    results = check_model(cfg, seq_len=4, batch=3, seed=5, max_coords=10)
    assert [r.name for r in results] == list(seq2seq.param_shapes(cfg))
    failed = [(r.name, r.error) for r in results if not r.passed]
    assert not failed, failed


def test_one_hot_inputs_pass_the_gradient_check_too():
    cfg = config("lstm", "additive", True, embed=0, layers=1)
    results = check_model(cfg, seq_len=3, batch=2, seed=2, max_coords=10)
    assert all(r.passed for r in results), [(r.name, r.error) for r in results]


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_a_float32_model_follows_the_float64_one(attention):
    """float32 runs the fused kernels (the LSTM's steps, additive attention's scores) where float64 runs numpy:
    the loss and every gradient agree to float32's precision, padding included."""
    cfg64 = config(attention=attention, bidirectional=attention != "dot", dropout=0.0, dtype="float64", hidden=8)
    params64 = seq2seq.init_params(cfg64, np.random.default_rng(1))
    cfg32 = replace(cfg64, dtype="float32")
    params32 = {name: value.astype(np.float32) for name, value in params64.items()}
    src, src_lengths, tgt, tgt_lengths = batch(np.random.default_rng(2), cfg64)
    loss64, grads64 = seq2seq.loss_and_grads(params64, cfg64, src, src_lengths, tgt, tgt_lengths)
    loss32, grads32 = seq2seq.loss_and_grads(params32, cfg32, src, src_lengths, tgt, tgt_lengths)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for name, grad in grads64.items():
        assert grads32[name].dtype == np.float32, name
        np.testing.assert_allclose(grads32[name], grad, rtol=0, atol=1e-4 * np.abs(grad).max() + 1e-7, err_msg=name)


def batch(rng, cfg, S=5, T=6, B=4):
    src, tgt = rng.integers(2, cfg.vocab_size, (S, B)), rng.integers(2, cfg.target_vocab, (T, B))
    src_lengths, tgt_lengths = np.array([S, 2, 3, 1]), np.array([T, 3, 1, 4])
    return src, src_lengths, tgt, tgt_lengths


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_padding_gets_exactly_zero_gradient(attention):
    """Source and target padding hold an id used nowhere else; its embedding rows get exactly zero gradient,
    and what padding holds changes neither the loss nor any gradient."""
    cfg = config(attention=attention, bidirectional=attention != "dot", dropout=0.0, dtype="float64")
    rng = np.random.default_rng(0)
    params = seq2seq.init_params(cfg, rng)
    src, src_lengths, tgt, tgt_lengths = batch(rng, cfg)
    pad_src, pad_tgt = src.copy(), tgt.copy()
    pad_src[np.arange(5)[:, None] >= src_lengths[None, :]] = 1
    pad_tgt[np.arange(6)[:, None] >= tgt_lengths[None, :]] = 1
    loss, grads = seq2seq.loss_and_grads(params, cfg, pad_src, src_lengths, pad_tgt, tgt_lengths)
    assert np.all(grads["embed.W"][1] == 0.0)
    assert np.all(grads["dec.embed.W"][1] == 0.0)
    other_src, other_tgt = pad_src.copy(), pad_tgt.copy()
    other_src[pad_src == 1], other_tgt[pad_tgt == 1] = 0, 0
    loss2, grads2 = seq2seq.loss_and_grads(params, cfg, other_src, src_lengths, other_tgt, tgt_lengths)
    assert loss2 == pytest.approx(loss, abs=1e-12)
    for name in ("layer.0.Wx", "dec.layer.1.Wh", "bridge.W", "head.W"):
        np.testing.assert_allclose(grads2[name], grads[name], atol=1e-12)


@pytest.mark.parametrize(("cell", "attention", "bidirectional"), [("lstm", "general", True), ("gru", "dot", False),
                                                                   ("rnn", "additive", False), ("lstm", "none", True)])
def test_decoding_a_token_at_a_time_matches_the_teacher_forced_forward(cell, attention, bidirectional):
    cfg = config(cell, attention, bidirectional, dropout=0.0, dtype="float64")
    rng = np.random.default_rng(1)
    params = seq2seq.init_params(cfg, rng)
    src, src_lengths, tgt, tgt_lengths = batch(rng, cfg)
    full = np.full_like(tgt_lengths, tgt.shape[0])
    nll = seq2seq.sequence_nll(params, cfg, src, src_lengths, tgt, full)
    memory, state = seq2seq.encode(params, cfg, src, src_lengths)
    ids, stepped = np.zeros(4, int), np.zeros(4)
    for t in range(tgt.shape[0]):
        logits, state, alpha = seq2seq.decode_step(params, cfg, memory, ids, state)
        logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
            - logits.max(1, keepdims=True)
        stepped -= logp[np.arange(4), tgt[t]]
        ids = tgt[t]
        if alpha is not None:
            np.testing.assert_allclose(alpha.sum(axis=1), 1.0)
            assert np.all(alpha[~memory.real] == 0.0)  # padding is never attended to
    np.testing.assert_allclose(stepped, nll, rtol=1e-10)


def test_memory_take_repeats_sources():
    cfg = config(dropout=0.0)
    rng = np.random.default_rng(2)
    params = seq2seq.init_params(cfg, rng)
    src, src_lengths, _, _ = batch(rng, cfg)
    memory, _ = seq2seq.encode(params, cfg, src, src_lengths)
    taken = memory.take(np.array([3, 3, 0]))
    assert taken.states.shape == (3, 5, 4) and taken.real[0].sum() == 1 and taken.real[2].sum() == 5
    np.testing.assert_array_equal(taken.keys[1], memory.keys[3])


def test_configs_an_encoder_decoder_cannot_have():
    with pytest.raises(ConfigError, match="widths must match"):
        config(attention="dot", bidirectional=True)
    with pytest.raises(ConfigError, match="only an encoder–decoder has attention"):
        ModelConfig(cell="lstm", vocab_size=5, hidden=4, attention="dot")
    with pytest.raises(ConfigError, match="only an encoder–decoder has attention"):
        ModelConfig(cell="lstm", vocab_size=5, hidden=4, target_vocab=5)
    with pytest.raises(ConfigError, match="unknown attention"):
        config(attention="cosine")
    assert config().kind == "seq2seq"
    assert ModelConfig.from_dict(config().to_dict()) == config()


def test_bad_inputs_are_config_errors():
    cfg = config(dropout=0.0)
    params = seq2seq.init_params(cfg, np.random.default_rng(3))
    src, tgt = np.zeros((3, 2), int), np.zeros((4, 2), int)
    with pytest.raises(ConfigError, match="target holds ids outside"):
        seq2seq.loss_and_grads(params, cfg, src, [3, 3], tgt + 6, [4, 4])
    with pytest.raises(ConfigError, match="batches differ"):
        seq2seq.loss_and_grads(params, cfg, src, [3, 3], tgt[:, :1], [4])
    with pytest.raises(ConfigError, match="lengths"):
        seq2seq.loss_and_grads(params, cfg, src, [3, 0], tgt, [4, 4])


@pytest.mark.parametrize("attention", ["none", "general"])
def test_learns_to_reverse_sequences(attention):
    """Reversing a sequence needs the whole source: the loss must fall far below a guess's log(U)."""
    cfg = config("gru", attention, False, hidden=32, layers=1, embed=16, dropout=0.0, vocab_size=8, target_vocab=8)
    rng = np.random.default_rng(4)
    params = seq2seq.init_params(cfg, rng)
    opt = make_optimizer("adam", params)
    losses = []
    for _ in range(300):
        lengths = rng.integers(1, 5, 16)
        src = rng.integers(2, 8, (4, 16))
        tgt = np.zeros((5, 16), int)
        for b, n in enumerate(lengths):
            tgt[:n, b] = src[:n, b][::-1]
        loss, grads = seq2seq.loss_and_grads(params, cfg, src, lengths, tgt, lengths + 1)
        opt.step(params, grads, 0.02)
        losses.append(loss)
    assert losses[0] > 0.9 * np.log(8)
    assert np.mean(losses[-20:]) < 0.25 * losses[0], (losses[0], np.mean(losses[-20:]))
