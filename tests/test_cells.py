"""Cells: forward against a plain per-step reference, float64 gradient checks of xp, Wh and the state."""

import zlib

import numpy as np
import pytest

from charlm.engine import cells
from charlm.engine.gradcheck import numeric_gradient, rel_error

CASES = [("rnn", "tanh"), ("rnn", "relu"), ("gru-simple", "tanh"), ("gru", "tanh"), ("lstm", "tanh")]


def seed_of(*parts):
    """A seed that is the same in every process (str hashing is randomised)."""
    return zlib.crc32(repr(parts).encode())


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def naive_forward(cell, xp, state, Wh, activation):
    """The lecture's equations, one step and one gate at a time (xp[t] = W_x x<t> + b, gates stacked)."""
    T, B, G = xp.shape
    H = Wh.shape[0]
    a = state[0].copy()
    c = state[1].copy() if cell == "lstm" else None
    outs = []
    for t in range(T):
        z = xp[t]
        if cell == "rnn":
            pre = a @ Wh + z
            a = np.tanh(pre) if activation == "tanh" else np.maximum(pre, 0.0)
        elif cell == "gru-simple":
            gamma_u = sigmoid(a @ Wh[:, :H] + z[:, :H])
            c_tilde = np.tanh(a @ Wh[:, H:] + z[:, H:])
            a = gamma_u * c_tilde + (1.0 - gamma_u) * a
        elif cell == "gru":
            gamma_u = sigmoid(a @ Wh[:, :H] + z[:, :H])
            gamma_r = sigmoid(a @ Wh[:, H:2 * H] + z[:, H:2 * H])
            c_tilde = np.tanh((gamma_r * a) @ Wh[:, 2 * H:] + z[:, 2 * H:])
            a = gamma_u * c_tilde + (1.0 - gamma_u) * a
        else:
            gamma_u = sigmoid(a @ Wh[:, :H] + z[:, :H])
            gamma_f = sigmoid(a @ Wh[:, H:2 * H] + z[:, H:2 * H])
            gamma_o = sigmoid(a @ Wh[:, 2 * H:3 * H] + z[:, 2 * H:3 * H])
            c_tilde = np.tanh(a @ Wh[:, 3 * H:] + z[:, 3 * H:])
            c = gamma_u * c_tilde + gamma_f * c
            a = gamma_o * np.tanh(c)
        outs.append(a)
    final = (a, c) if cell == "lstm" else (a,)
    return np.stack(outs), final


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
    hs, final, _ = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
    ref_hs, ref_final = naive_forward(cell, xp, state, Wh, activation)
    np.testing.assert_allclose(hs, ref_hs, rtol=0, atol=1e-12, err_msg=f"{cell} hs")
    for got, want in zip(final, ref_final, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=f"{cell} final state")


@pytest.mark.parametrize("cell,activation", CASES)
def test_workspace_gives_the_same_result_and_reuses_buffers(cell, activation):
    rng = np.random.default_rng(3)
    xp, state, Wh = random_inputs(cell, rng, 4, 3, 5, np.float32)
    dhs = rng.standard_normal((4, 3, 5)).astype(np.float32)
    plain_hs, plain_final, cache = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
    plain_grads = cells.sequence_backward(dhs, cache)
    ws = {}
    for _ in range(2):
        hs, final, cache = cells.sequence_forward(cell, xp, state, Wh, activation=activation, ws=ws)
        np.testing.assert_array_equal(hs, plain_hs)
        grads = cells.sequence_backward(dhs, cache)
        np.testing.assert_array_equal(grads[0], plain_grads[0])
        np.testing.assert_array_equal(grads[2], plain_grads[2])
        for got, want in zip(grads[1], plain_grads[1], strict=True):
            np.testing.assert_array_equal(got, want)
        n_buffers = len(ws)
    assert n_buffers == len(ws) > 0
    assert hs.dtype == np.float32 and grads[2].dtype == np.float32


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("shape", [(1, 1, 2), (1, 3, 3), (4, 1, 3), (5, 2, 4)])
def test_sequence_backward_gradcheck(cell, activation, shape):
    T, B, H = shape
    rng = np.random.default_rng(seed_of(cell, activation, shape, "grad"))
    xp, state, Wh = random_inputs(cell, rng, T, B, H)
    dhs = rng.standard_normal((T, B, H))

    def f():
        hs, _, _ = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
        return float(np.sum(hs * dhs))

    _, _, cache = cells.sequence_forward(cell, xp, state, Wh, activation=activation)
    dxp, dstate, dWh = cells.sequence_backward(dhs, cache)
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
    dhs = rng.standard_normal((3, 2, 3))
    _, _, dWh = cells.sequence_backward(dhs, cache)

    def f():
        return float(np.sum(cells.sequence_forward("lstm", xp, state, Wh)[0] * dhs))

    numeric = numeric_gradient(f, Wh, np.arange(Wh.size), 1e-3)
    assert rel_error(dWh.reshape(-1), numeric) < 1e-6
    wrong = dWh.copy()
    wrong[0, 0] *= 1.001
    assert rel_error(wrong.reshape(-1), numeric) > 1e-6


def test_sigmoid_is_stable_at_extremes():
    z = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], np.float32)
    with np.errstate(all="raise"):
        cells.sigmoid_(z)
    np.testing.assert_allclose(z, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)



@pytest.mark.parametrize("cell", ["gru-simple", "gru", "lstm"])
def test_time_loop_saturates_gates_without_floating_point_errors(cell):
    # The loops call the gate logistic without its own errstate; sequence_forward must supply one.
    H, G = 3, cells.GATES[cell] * 3
    xp = np.tile(np.array([-1e4, 1e4], np.float32), (4, 2, G // 2 + 1))[:, :, :G].copy()
    state = tuple(np.zeros((2, H), np.float32) for _ in range(cells.STATE_ARRAYS[cell]))
    with np.errstate(all="raise"):
        hs, _, _ = cells.sequence_forward(cell, xp, state, np.zeros((H, G), np.float32))
    assert np.all(np.isfinite(hs)) and np.all(np.abs(hs) <= 1.0)
