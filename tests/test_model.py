"""The model: config, shapes, float64 gradchecks, chunked TBPTT, stepping, learning, dropout, validation."""

import math

import numpy as np
import pytest
from reference import naive_forward, naive_model_nll

from charlm.engine.gradcheck import numeric_gradient, rel_error
from charlm.errors import ConfigError
from charlm.models import lm as model
from charlm.models.config import ModelConfig
from charlm.models.gradcheck import check_model
from charlm.models.lm import (
    forward_nll,
    init_params,
    init_state,
    loss_and_grads,
    param_shapes,
    step_logits,
    trace,
)

CELL_CASES = [("rnn", "tanh"), ("rnn", "relu"), ("gru-simple", "tanh"), ("gru", "tanh"), ("lstm", "tanh")]


def make(cell="lstm", V=7, H=5, L=2, E=0, p=0.0, activation="tanh", dtype="float64", seed=0):
    cfg = ModelConfig(cell=cell, vocab_size=V, hidden=H, layers=L, embed=E, dropout=p, activation=activation,
                      dtype=dtype)
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng)
    for name, value in params.items():
        if name.endswith(".b"):
            value += 0.1 * rng.standard_normal(value.shape)
    return cfg, params, rng


def random_state(cfg, B, rng):
    return [tuple(0.5 * rng.standard_normal(a.shape) for a in layer) for layer in init_state(cfg, B)]


# ------------------------------------------------------------------------------------------- config

def test_config_round_trip_and_defaults():
    cfg = ModelConfig(cell="gru", vocab_size=65, hidden=128, layers=3, embed=16, dropout=0.25)
    d = cfg.to_dict()
    assert d == {"cell": "gru", "vocab_size": 65, "hidden": 128, "layers": 3, "embed": 16, "dropout": 0.25,
                 "activation": "tanh", "dtype": "float32", "tie": False, "bidirectional": False,
                 "heads": (), "pool": "", "kind": "lm", "target_vocab": 0, "attention": ""}
    assert ModelConfig.from_dict(d) == cfg
    older = {k: v for k, v in d.items() if k != "kind"}  # a checkpoint written before kinds were stored
    assert ModelConfig.from_dict(older).kind == "lm"
    assert ModelConfig.from_dict({**older, "heads": [2, 3]}).kind == "tagger"
    assert ModelConfig.from_dict({**older, "heads": [4], "pool": "mean"}).kind == "classifier"
    with pytest.raises(ConfigError, match="kind"):
        ModelConfig.from_dict({**d, "kind": "tagger"})  # a kind its heads contradict
    del d["tie"], d["bidirectional"], d["heads"], d["pool"]  # a checkpoint written before these existed
    assert ModelConfig.from_dict(d) == cfg


@pytest.mark.parametrize("changes", [
    {"cell": "transformer"}, {"vocab_size": 0}, {"hidden": 0}, {"hidden": 2.5}, {"layers": True},
    {"embed": -1}, {"dropout": 1.0}, {"dropout": -0.1}, {"dropout": "0.1"}, {"activation": "gelu"},
    {"dtype": "float16"}, {"bidirectional": 1}, {"heads": (1,)}, {"heads": 3}, {"heads": (2.5,)},
])
def test_config_rejects_bad_values(changes):
    d = {**ModelConfig(cell="lstm", vocab_size=5, hidden=4).to_dict(), **changes}
    with pytest.raises(ConfigError):
        ModelConfig.from_dict(d)


@pytest.mark.parametrize("d", [{"cell": "lstm", "vocab_size": 5},
                               {"cell": "lstm", "vocab_size": 5, "hidden": 4, "colour": "red"}, ["lstm"]])
def test_config_from_dict_rejects_missing_unknown_and_non_mappings(d):
    with pytest.raises(ConfigError):
        ModelConfig.from_dict(d)


def test_param_names_shapes_and_init():
    cfg = ModelConfig(cell="lstm", vocab_size=11, hidden=6, layers=2, embed=4)
    assert param_shapes(cfg) == {
        "embed.W": (11, 4),
        "layer.0.Wx": (4, 24), "layer.0.Wh": (6, 24), "layer.0.b": (24,),
        "layer.1.Wx": (6, 24), "layer.1.Wh": (6, 24), "layer.1.b": (24,),
        "head.W": (6, 11), "head.b": (11,),
    }
    no_embed = ModelConfig(cell="gru", vocab_size=11, hidden=6)
    assert param_shapes(no_embed) == {"layer.0.Wx": (11, 18), "layer.0.Wh": (6, 18), "layer.0.b": (18,),
                                      "head.W": (6, 11), "head.b": (11,)}
    params = init_params(cfg, np.random.default_rng(1))
    assert all(p.dtype == np.float32 for p in params.values())
    np.testing.assert_array_equal(params["layer.1.b"], np.r_[np.zeros(6), np.ones(6), np.zeros(12)])
    assert np.abs(params["layer.0.Wh"]).max() <= 1 / math.sqrt(6)
    again = init_params(cfg, np.random.default_rng(1))
    assert all(np.array_equal(params[k], again[k]) for k in params)
    state = init_state(cfg, 3)
    assert len(state) == 2 and all(len(s) == 2 and s[0].shape == (3, 6) and not s[0].any() for s in state)


def test_one_hot_input_rows_start_at_unit_scale_and_the_rest_at_one_over_sqrt_h():
    # One-hot input: layer.0.Wx is an embedding into gate space (standard normal, as nn.Embedding); with
    # --embed the same matrix is an ordinary weight (uniform within 1/sqrt(H)), as are all the others.
    one_hot = init_params(ModelConfig(cell="lstm", vocab_size=60, hidden=64, layers=2), np.random.default_rng(2))
    assert 0.9 < one_hot["layer.0.Wx"].std() < 1.1
    embedded = init_params(ModelConfig(cell="lstm", vocab_size=60, hidden=64, layers=2, embed=8),
                           np.random.default_rng(2))
    for params in (one_hot, embedded):
        for name in ("layer.1.Wx", "layer.0.Wh", "layer.1.Wh", "head.W"):
            assert np.abs(params[name]).max() <= 1 / 8
    assert np.abs(embedded["layer.0.Wx"]).max() <= 1 / 8
    assert 0.9 < embedded["embed.W"].std() < 1.1


def test_initial_loss_is_near_uniform():
    cfg = ModelConfig(cell="lstm", vocab_size=50, hidden=32, layers=2)
    params = init_params(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).integers(0, 50, (20, 8))
    loss, grads, _ = loss_and_grads(params, cfg, x, x, init_state(cfg, 8))
    assert abs(loss - math.log(50)) < 0.1
    assert set(grads) == set(params)
    assert all(grads[k].shape == params[k].shape and grads[k].dtype == np.float32 for k in params)


# ------------------------------------------------------------------------------------- gradients

GRAD_CASES = [  # layers, embed, dropout, T, B, H, V
    (1, 0, 0.0, 1, 1, 3, 4),
    (1, 0, 0.0, 4, 3, 4, 6),
    (2, 0, 0.0, 3, 1, 3, 5),
    (2, 3, 0.0, 1, 2, 4, 5),
    (3, 2, 0.4, 3, 2, 3, 4),
]


@pytest.mark.parametrize("cell,activation", CELL_CASES)
@pytest.mark.parametrize("case", GRAD_CASES)
def test_model_gradcheck_every_parameter_and_state(cell, activation, case):
    layers, embed, dropout, T, B, H, V = case
    cfg = ModelConfig(cell=cell, activation=activation, vocab_size=V, hidden=H, layers=layers, embed=embed,
                      dropout=dropout)
    results = check_model(cfg, seq_len=T, batch=B, seed=T * 100 + B, max_coords=12)
    names = [r.name for r in results]
    assert names[:len(param_shapes(cfg))] == list(param_shapes(cfg))
    assert sum(n.startswith("state.") for n in names) == layers * (2 if cell == "lstm" else 1)
    bad = [(r.name, r.error) for r in results if not r.passed]
    assert not bad, f"gradient check failed: {bad}"


def test_model_gradcheck_catches_a_broken_backward(monkeypatch):
    cfg = ModelConfig(cell="gru", vocab_size=5, hidden=3, layers=2)
    real = model._head_backward

    def leaky(cache, grads):
        dout, dtable = real(cache, grads)
        dout[0] *= 1.01  # a 1% error in the first step's gradient
        return dout, dtable

    monkeypatch.setattr(model, "_head_backward", leaky)
    results = check_model(cfg, seq_len=3, batch=2)
    failed = {r.name for r in results if not r.passed}
    assert "layer.1.Wh" in failed and "head.W" not in failed


# ----------------------------------------------------------------------------------- forward passes

@pytest.mark.parametrize("cell,activation", CELL_CASES)
@pytest.mark.parametrize("layers,embed", [(1, 0), (2, 3)])
def test_forward_nll_matches_naive_model(cell, activation, layers, embed):
    cfg, params, rng = make(cell, L=layers, E=embed, activation=activation)
    x, y = rng.integers(0, 7, (6, 3)), rng.integers(0, 7, (6, 3))
    state = random_state(cfg, 3, rng)
    nll, _ = forward_nll(params, cfg, x, y, state)
    assert nll.shape == (6, 3) and nll.dtype == np.float64
    np.testing.assert_allclose(nll, naive_model_nll(params, cfg, x, y, state), rtol=0, atol=1e-12)
    loss, _, _ = loss_and_grads(params, cfg, x, y, state)
    assert loss == pytest.approx(nll.mean(), abs=1e-13)


@pytest.mark.parametrize("cell,activation", CELL_CASES)
def test_one_chunk_equals_three_chunks_with_carried_state(cell, activation):
    cfg, params, rng = make(cell, L=2, E=0, activation=activation)
    x, y = rng.integers(0, 7, (9, 4)), rng.integers(0, 7, (9, 4))
    state = random_state(cfg, 4, rng)
    whole, whole_state = forward_nll(params, cfg, x, y, state)
    parts, carried = [], state
    for k in range(3):
        part, carried = forward_nll(params, cfg, x[3 * k:3 * k + 3], y[3 * k:3 * k + 3], carried)
        parts.append(part)
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-12)
    _, _, trained_state = loss_and_grads(params, cfg, x, y, state)
    for a, b, c in zip(sum(whole_state, ()), sum(carried, ()), sum(trained_state, ()), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("cell,embed", [("rnn", 0), ("gru", 3), ("gru-simple", 0), ("lstm", 3)])
def test_step_logits_matches_forward_nll(cell, embed):
    cfg, params, rng = make(cell, L=2, E=embed)
    x, y = rng.integers(0, 7, (5, 3)), rng.integers(0, 7, (5, 3))
    state = random_state(cfg, 3, rng)
    nll, final = forward_nll(params, cfg, x, y, state)
    stepped = state
    for t in range(5):
        logits, stepped = step_logits(params, cfg, x[t], stepped)
        assert logits.shape == (3, 7)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(-log_probs[np.arange(3), y[t]], nll[t], rtol=0, atol=1e-12)
    for a, b in zip(sum(final, ()), sum(stepped, ()), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("id_dtype", [np.uint8, np.int32, np.int64, np.uint16])
def test_any_integer_id_dtype_gives_the_same_loss(id_dtype):
    cfg, params, rng = make("lstm", dtype="float32")
    x = rng.integers(0, 7, (5, 2))
    y = np.roll(x, 1)
    ref, ref_grads, _ = loss_and_grads(params, cfg, x.astype(np.int64), y, init_state(cfg, 2))
    ref_grads = {k: v.copy() for k, v in ref_grads.items()}
    loss, grads, _ = loss_and_grads(params, cfg, x.astype(id_dtype), y.astype(id_dtype), init_state(cfg, 2))
    assert loss == ref
    assert all(np.array_equal(grads[k], ref_grads[k]) for k in params)


def test_workspace_matches_fresh_buffers_and_state_is_not_aliased():
    cfg, params, rng = make("lstm", L=2, E=3, dtype="float32")
    x, y = rng.integers(0, 7, (6, 4)), rng.integers(0, 7, (6, 4))
    state = init_state(cfg, 4)
    fresh_loss, fresh_grads, fresh_state = loss_and_grads(params, cfg, x, y, state)
    ws = {}
    loss, grads, new_state = loss_and_grads(params, cfg, x, y, state, workspace=ws)
    assert loss == fresh_loss
    assert all(np.array_equal(grads[k], fresh_grads[k]) for k in params)
    kept = [a.copy() for a in sum(new_state, ())]
    n_buffers = len(ws)
    loss2, grads2, _ = loss_and_grads(params, cfg, x[::-1].copy(), y, new_state, workspace=ws)
    assert len(ws) == n_buffers and loss2 != loss
    assert all(np.array_equal(a, b) for a, b in zip(kept, sum(new_state, ()), strict=True))
    nll, _ = forward_nll(params, cfg, x, y, state, workspace=ws)
    assert nll.mean() == pytest.approx(fresh_loss, rel=1e-6)


# ----------------------------------------------------------------------------------------------- mask

def test_mask_weighs_the_loss_and_masked_targets_get_no_gradient():
    cfg, params, rng = make("gru", L=2, E=3)
    x, y = rng.integers(0, 7, (5, 3)), rng.integers(0, 7, (5, 3))
    mask = (rng.random((5, 3)) < 0.6).astype(float)
    mask[0, 0] = 1.0
    state = random_state(cfg, 3, rng)
    nll, _ = forward_nll(params, cfg, x, y, state)
    loss, grads, _ = loss_and_grads(params, cfg, x, y, state, mask=mask)
    assert loss == pytest.approx((mask * nll).sum() / mask.sum(), abs=1e-13)
    other_y = np.where(mask == 0, (y + 1) % 7, y)  # change only the masked targets
    other_loss, other_grads, _ = loss_and_grads(params, cfg, x, other_y, state, mask=mask)
    assert other_loss == loss and all(np.array_equal(other_grads[k], grads[k]) for k in params)
    ones, ones_grads, _ = loss_and_grads(params, cfg, x, y, state, mask=np.ones((5, 3)))
    plain, plain_grads, _ = loss_and_grads(params, cfg, x, y, state)
    assert ones == pytest.approx(plain, abs=1e-14)
    for k in params:
        np.testing.assert_allclose(ones_grads[k], plain_grads[k], rtol=0, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("cell,embed", [("lstm", 0), ("gru-simple", 3)])
def test_padded_batch_with_mask_equals_the_unpadded_streams(cell, embed):
    cfg, params, rng = make(cell, L=2, E=embed)
    lengths = [6, 2, 4]
    streams = [(rng.integers(0, 7, n), rng.integers(0, 7, n)) for n in lengths]
    x, y = rng.integers(0, 7, (6, 3)), rng.integers(0, 7, (6, 3))  # padding: arbitrary valid ids
    mask = np.zeros((6, 3))
    for b, (xs, ys) in enumerate(streams):
        x[:lengths[b], b], y[:lengths[b], b], mask[:lengths[b], b] = xs, ys, 1.0
    state = random_state(cfg, 3, rng)
    loss, grads, _ = loss_and_grads(params, cfg, x, y, state, mask=mask)
    total, summed = 0.0, {k: np.zeros_like(p) for k, p in params.items()}
    for b, (xs, ys) in enumerate(streams):  # each stream alone, unpadded: its mean loss times its length
        alone = [tuple(a[b:b + 1] for a in layer) for layer in state]
        part, part_grads, _ = loss_and_grads(params, cfg, xs[:, None], ys[:, None], alone)
        total += part * lengths[b]
        for k in params:
            summed[k] += part_grads[k] * lengths[b]
    assert loss == pytest.approx(total / sum(lengths), abs=1e-13)
    for k in params:
        np.testing.assert_allclose(grads[k], summed[k] / sum(lengths), rtol=0, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_weighted_mask_gradcheck(cell):
    cfg, params, rng = make(cell, V=5, H=3, L=2, E=2)
    x, y = rng.integers(0, 5, (3, 2)), rng.integers(0, 5, (3, 2))
    mask = np.array([[1.0, 0.0], [0.5, 2.0], [0.0, 1.0]])
    state = random_state(cfg, 2, rng)
    _, grads, _, dstate = model.loss_grads_and_dstate(params, cfg, x, y, state, mask=mask)

    def loss():
        return loss_and_grads(params, cfg, x, y, state, mask=mask)[0]

    tensors = [*((k, params[k], grads[k]) for k in params), ("state.0.0", state[0][0], dstate[0][0])]
    for name, value, analytic in tensors:
        numeric = numeric_gradient(loss, value, np.arange(value.size), 1e-3)
        assert rel_error(analytic.reshape(-1), numeric) < 1e-6, name


@pytest.mark.parametrize("bad", [np.ones((5, 2)), np.zeros((4, 2)), np.full((4, 2), -1.0), np.full((4, 2), np.nan)])
def test_mask_must_match_x_and_hold_weights_with_a_positive_sum(bad):
    cfg, params, rng = make("lstm")
    x = rng.integers(0, 7, (4, 2))
    with pytest.raises(ConfigError, match="mask"):
        loss_and_grads(params, cfg, x, x, init_state(cfg, 2), mask=bad)


# ---------------------------------------------------------------------------------------------- trace

@pytest.mark.parametrize("cell,activation,embed", [("lstm", "tanh", 0), ("gru", "tanh", 3), ("rnn", "relu", 0),
                                                   ("gru-simple", "tanh", 2)])
def test_trace_agrees_with_the_forward_pass(cell, activation, embed):
    cfg, params, rng = make(cell, L=2, E=embed, p=0.3, activation=activation)
    x, y = rng.integers(0, 7, (4, 3)), rng.integers(0, 7, (4, 3))
    state = random_state(cfg, 3, rng)
    acts, new_state = trace(params, cfg, x, state)
    gates = {"rnn": [], "gru-simple": ["u", "c~"], "gru": ["u", "r", "c~"], "lstm": ["u", "f", "o", "c~", "c"]}
    expected = {f"layer.{l}.{k}" for l in range(2) for k in ["a", *gates[cell]]} | {"head.logits"}
    assert set(acts) == expected | ({"embed"} if embed else set())
    assert all(v.shape[:2] == (4, 3) for v in acts.values())
    inp = params["embed.W"][x] if embed else np.eye(7)[x]
    for layer in range(2):  # every layer's a<t> is the naive cell's on the previous layer's a<t> (no dropout)
        xp = inp @ params[f"layer.{layer}.Wx"] + params[f"layer.{layer}.b"]
        inp, _ = naive_forward(cell, xp, state[layer], params[f"layer.{layer}.Wh"], activation)
        np.testing.assert_allclose(acts[f"layer.{layer}.a"], inp, rtol=0, atol=1e-12)
    logits = acts["head.logits"]
    log_probs = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
    nll, final = forward_nll(params, cfg, x, y, state)
    np.testing.assert_allclose(-np.take_along_axis(log_probs, y[..., None], axis=2)[..., 0], nll, atol=1e-12)
    for a, b in zip(sum(final, ()), sum(new_state, ()), strict=True):
        np.testing.assert_array_equal(a, b)
    if cell == "lstm":
        np.testing.assert_array_equal(acts["layer.1.c"][-1], new_state[1][1])


# -------------------------------------------------------------------------------------------- dropout

def test_dropout_depends_on_rng_and_zero_dropout_is_no_dropout():
    cfg, params, rng = make("lstm", L=2, p=0.5, dtype="float32")
    x, y = rng.integers(0, 7, (6, 4)), rng.integers(0, 7, (6, 4))
    state = init_state(cfg, 4)
    a, _, _ = loss_and_grads(params, cfg, x, y, state, rng=np.random.default_rng(1))
    a_again, _, _ = loss_and_grads(params, cfg, x, y, state, rng=np.random.default_rng(1))
    b, _, _ = loss_and_grads(params, cfg, x, y, state, rng=np.random.default_rng(2))
    assert a == a_again and a != b
    clean = ModelConfig(**{**cfg.to_dict(), "dropout": 0.0})
    with_rng, _, _ = loss_and_grads(params, clean, x, y, state, rng=np.random.default_rng(1))
    without, _, _ = loss_and_grads(params, clean, x, y, state)
    nll, _ = forward_nll(params, cfg, x, y, state)
    assert with_rng == without == pytest.approx(nll.mean(), rel=1e-6)
    assert with_rng != a
    with pytest.raises(ConfigError, match="rng"):
        loss_and_grads(params, cfg, x, y, state)


# ------------------------------------------------------------------------------------------ learning

def test_learns_a_periodic_sequence():
    text = "the cat sat. " * 40
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text])
    cfg = ModelConfig(cell="lstm", vocab_size=len(chars), hidden=32, layers=1)
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    B, T = 4, 13
    streams = ids[:(len(ids) - 1) // B * B + 1]
    span = (len(streams) - 1) // B
    x_all = np.stack([streams[b * span:(b + 1) * span] for b in range(B)], axis=1)
    y_all = np.stack([streams[b * span + 1:(b + 1) * span + 1] for b in range(B)], axis=1)
    state, ws, loss, step = init_state(cfg, B), {}, float("inf"), 0
    for step in range(1, 301):
        t0 = (step - 1) * T % (span - T)
        if t0 < T:
            state = init_state(cfg, B)
        x, y = x_all[t0:t0 + T], y_all[t0:t0 + T]
        loss, grads, state = loss_and_grads(params, cfg, x, y, state, workspace=ws)
        for k in params:  # Adam, lr 1e-2
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            params[k] -= 1e-2 * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
        if step > 50 and loss < 0.02:
            break
    nll, _ = forward_nll(params, cfg, x_all[T:], y_all[T:], init_state(cfg, B))
    assert loss < 0.05 and nll[T:].mean() < 0.05, (step, loss, nll[T:].mean())


# ---------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("bad", ["x_float", "x_1d", "x_range", "y_shape", "state_len", "state_shape",
                                 "param_dtype", "param_missing", "empty"])
def test_public_entry_points_reject_bad_inputs(bad):
    cfg, params, rng = make("lstm", dtype="float32")
    x, y = rng.integers(0, 7, (4, 2)), rng.integers(0, 7, (4, 2))
    state = init_state(cfg, 2)
    if bad == "x_float":
        x = x.astype(np.float32)
    elif bad == "x_1d":
        x = x[0]
    elif bad == "x_range":
        x[0, 1] = 7
    elif bad == "y_shape":
        y = y[:3]
    elif bad == "state_len":
        state = state[:1]
    elif bad == "state_shape":
        state = init_state(cfg, 3)
    elif bad == "param_dtype":
        params["head.b"] = params["head.b"].astype(np.float64)
    elif bad == "param_missing":
        del params["layer.1.Wh"]
    elif bad == "empty":
        x, y = x[:0], y[:0]
    with pytest.raises(ConfigError):
        loss_and_grads(params, cfg, x, y, state)
    with pytest.raises(ConfigError):
        forward_nll(params, cfg, x, y, state)
    if bad not in ("y_shape", "empty", "x_1d"):
        with pytest.raises(ConfigError):
            step_logits(params, cfg, x[0] if x.ndim == 2 else x, state)
    with pytest.raises(ConfigError):
        init_state(cfg, 0)
