"""Cells: forward against the naive per-step reference and against PyTorch-form LSTM/GRU references,
float64 gradient checks of xp, Wh and the state, workspaces, saturation, the per-step activations."""

import numpy as np
import pytest
from reference import naive_forward, seed_of, to_torch_gru, to_torch_lstm, torch_gru, torch_lstm

from charlm.engine import cells
from charlm.engine.gradcheck import numeric_gradient, rel_error

CASES = [("rnn", "tanh"), ("rnn", "relu"), ("gru-simple", "tanh"), ("gru", "tanh"), ("lstm", "tanh")]


def random_inputs(cell, rng, T, B, H, dtype=np.float64):
    G = cells.GATES[cell] * H
    xp = rng.standard_normal((T, B, G)).astype(dtype)
    Wh = (rng.standard_normal((H, G)) / np.sqrt(H)).astype(dtype)
    state = tuple((0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(cells.STATE_ARRAYS[cell]))
    return xp, state, Wh


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 3, 4), (5, 1, 3), (7, 4, 6)])
def test_forward_matches_naive_reference(cell, activation, shape):
    T, B, H = shape
    rng = np.random.default_rng(seed_of(cell, activation, shape))
    xp, state, Wh = random_inputs(cell, rng, T, B, H)
    a_out, final, _ = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
    ref_out, ref_final = naive_forward(cell, xp, state, Wh, activation)
    np.testing.assert_allclose(a_out, ref_out, rtol=0, atol=1e-12, err_msg=f"{cell} outputs")
    for got, want in zip(final, ref_final, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=f"{cell} final state")


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 2, 3, 2), (4, 1, 2, 5), (6, 3, 4, 3)])
def test_lstm_matches_an_independent_pytorch_form_reference(shape):
    # The documented mapping: nn.LSTM rows [i, f, g, o] = our columns [u, f, c~, o], transposed; b_ih + b_hh = b.
    T, B, D, H = shape
    rng = np.random.default_rng(seed_of("torch-lstm", shape))
    x = rng.standard_normal((T, B, D))
    Wx, Wh, b = rng.standard_normal((D, 4 * H)), rng.standard_normal((H, 4 * H)), rng.standard_normal(4 * H)
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    a_out, (a_T, c_T), _ = cells.sequence_forward("lstm", x @ Wx + b, (h0, c0), Wh)
    ref_out, (h_T, ref_c_T) = torch_lstm(x, h0, c0, *to_torch_lstm(Wx, Wh, b, rng.standard_normal(4 * H)))
    np.testing.assert_allclose(a_out, ref_out, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a_T, h_T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(c_T, ref_c_T, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (5, 3, 4, 3)])  # H > 1: a reset gate equal on all units commutes
def test_gru_maps_to_pytorch_form_where_the_reset_gate_is_open(shape):
    # nn.GRU's z = 1 - Γu (z rows = our u columns negated), n = c~; r applies after the recurrent product in
    # PyTorch and before it in charlm, so the two agree only where Γr = 1: a reset bias of 50 opens it.
    T, B, D, H = shape
    rng = np.random.default_rng(seed_of("torch-gru", shape))
    x = rng.standard_normal((T, B, D))
    Wx, Wh, b = rng.standard_normal((D, 3 * H)), rng.standard_normal((H, 3 * H)), rng.standard_normal(3 * H)
    Wx[:, H:2 * H], Wh[:, H:2 * H], b[H:2 * H] = 0.0, 0.0, 50.0
    h0 = rng.standard_normal((B, H))
    a_out, (a_T,), _ = cells.sequence_forward("gru", x @ Wx + b, (h0,), Wh)
    ref_out, h_T = torch_gru(x, h0, *to_torch_gru(Wx, Wh, b))
    np.testing.assert_allclose(a_out, ref_out, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a_T, h_T, rtol=0, atol=1e-10)
    b[H:2 * H] = [-1.0, 1.0] + [0.0] * (H - 2)  # a reset gate unequal across units: the two functions differ
    differs, _, _ = cells.sequence_forward("gru", x @ Wx + b, (h0,), Wh)
    assert not np.allclose(differs, torch_gru(x, h0, *to_torch_gru(Wx, Wh, b))[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell,activation", CASES)
def test_workspace_gives_the_same_result_and_reuses_buffers(cell, activation):
    rng = np.random.default_rng(3)
    xp, state, Wh = random_inputs(cell, rng, 4, 3, 5, np.float32)
    da_out = rng.standard_normal((4, 3, 5)).astype(np.float32)
    plain_out, plain_final, cache = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
    plain_grads = cells.sequence_backward(da_out, cache)
    ws = {}
    for _ in range(2):
        a_out, final, cache = cells.sequence_forward(cell, xp, state, Wh, activation=activation, ws=ws)
        np.testing.assert_array_equal(a_out, plain_out)
        grads = cells.sequence_backward(da_out, cache)
        np.testing.assert_array_equal(grads[0], plain_grads[0])
        np.testing.assert_array_equal(grads[2], plain_grads[2])
        for got, want in zip(grads[1], plain_grads[1], strict=True):
            np.testing.assert_array_equal(got, want)
        n_buffers = len(ws)
    assert n_buffers == len(ws) > 0
    assert a_out.dtype == np.float32 and grads[2].dtype == np.float32


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("shape", [(1, 1, 2), (1, 3, 3), (4, 1, 3), (5, 2, 4)])
def test_sequence_backward_gradcheck(cell, activation, shape):
    T, B, H = shape
    rng = np.random.default_rng(seed_of(cell, activation, shape, "grad"))
    xp, state, Wh = random_inputs(cell, rng, T, B, H)
    da_out = rng.standard_normal((T, B, H))

    def f():
        a_out, _, _ = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
        return float(np.sum(a_out * da_out))

    _, _, cache = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
    dxp, dstate, dWh = cells.sequence_backward(da_out, cache)
    h = 1e-5 if activation == "relu" else 1e-3
    checks = [("xp", xp, dxp), ("Wh", Wh, dWh)] + [(f"state{k}", s, d) for k, (s, d) in
                                                    enumerate(zip(state, dstate, strict=True))]
    for name, value, analytic in checks:
        numeric = numeric_gradient(f, value, np.arange(value.size), h)
        err = rel_error(analytic.reshape(-1), numeric)
        assert err < 1e-6, f"{cell} d{name}: rel error {err:.2e}"


def test_gradcheck_detects_a_wrong_gradient():
    rng = np.random.default_rng(0)
    xp, state, Wh = random_inputs("lstm", rng, 3, 2, 3)
    _, _, cache = cells.sequence_forward("lstm", xp, state, Wh)
    da_out = rng.standard_normal((3, 2, 3))
    _, _, dWh = cells.sequence_backward(da_out, cache)

    def f():
        return float(np.sum(cells.sequence_forward("lstm", xp, state, Wh)[0] * da_out))

    numeric = numeric_gradient(f, Wh, np.arange(Wh.size), 1e-3)
    assert rel_error(dWh.reshape(-1), numeric) < 1e-6
    wrong = dWh.copy()
    wrong[0, 0] *= 1.001
    assert rel_error(wrong.reshape(-1), numeric) > 1e-6


def test_sigmoid_is_exact_at_extremes_under_its_errstate():
    # Its rule: inside errstate(over, under = ignore) exp(-z) may overflow to inf (giving 0) or underflow to 0
    # (giving 1); nothing else (divide, invalid) may happen.
    z = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], np.float32)
    with np.errstate(all="raise"), np.errstate(over="ignore", under="ignore"):
        out = cells.sigmoid_(z)
    assert out is z
    np.testing.assert_allclose(z, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):
        cells.sigmoid_(np.array([-1e4], np.float32))  # the errstate is the caller's: sigmoid_ has none


@pytest.mark.parametrize("cell", ["gru-simple", "gru", "lstm"])
def test_time_loop_saturates_gates_without_floating_point_errors(cell):
    # The loops call sigmoid_ without an errstate of their own; sequence_forward must supply one.
    H, G = 3, cells.GATES[cell] * 3
    xp = np.tile(np.array([-1e4, 1e4], np.float32), (4, 2, G // 2 + 1))[:, :, :G].copy()
    state = tuple(np.zeros((2, H), np.float32) for _ in range(cells.STATE_ARRAYS[cell]))
    with np.errstate(all="raise"):
        a_out, _, _ = cells.sequence_forward(cell, xp, state, np.zeros((H, G), np.float32))
    assert np.all(np.isfinite(a_out)) and np.all(np.abs(a_out) <= 1.0)


@pytest.mark.parametrize("cell,activation", CASES)
def test_step_activations_name_the_gates_and_reproduce_the_outputs(cell, activation):
    rng = np.random.default_rng(seed_of(cell, "acts"))
    T, B, H = 4, 2, 3
    xp, state, Wh = random_inputs(cell, rng, T, B, H)
    a_out, _, cache = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
    acts = cells.step_activations(cache)
    expected = {"a", *cells.GATE_NAMES[cell]} | ({"c"} if cell == "lstm" else set())
    assert set(acts) == expected and all(v.shape == (T, B, H) for v in acts.values())
    np.testing.assert_array_equal(acts["a"], a_out)
    a_prev = np.concatenate([state[0][None], a_out[:-1]])
    if cell == "lstm":  # c<t> = Γu * c~<t> + Γf * c<t-1>, a<t> = Γo * tanh(c<t>)
        c_prev = np.concatenate([state[1][None], acts["c"][:-1]])
        np.testing.assert_allclose(acts["c"], acts["u"] * acts["c~"] + acts["f"] * c_prev, atol=1e-12)
        np.testing.assert_allclose(a_out, acts["o"] * np.tanh(acts["c"]), atol=1e-12)
    elif cell != "rnn":  # c<t> = Γu * c~<t> + (1 - Γu) * c<t-1>
        np.testing.assert_allclose(a_out, acts["u"] * acts["c~"] + (1 - acts["u"]) * a_prev, atol=1e-12)
    for name in cells.GATE_NAMES[cell]:
        low = -1.0 if name == "c~" else 0.0
        assert np.all((acts[name] >= low) & (acts[name] <= 1.0)), name
