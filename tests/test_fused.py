"""The fused float32 LSTM kernels against the exact numpy steps, within the stated tanh error bound."""

import numpy as np
import pytest

from charlm.engine import cells, fused
from charlm.engine.fused import TANH32_CLAMP, TANH32_MAX_ERROR


@pytest.fixture(scope="module")
def tanh_all():
    import numba

    @numba.njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = fused.tanh32(x[i])

    def run(x):
        out = np.empty_like(x)
        apply(x, out)
        return out

    return run


def test_tanh32_stays_within_its_bound_everywhere(tanh_all):
    dense = np.linspace(-2 * TANH32_CLAMP, 2 * TANH32_CLAMP, 2_000_001, dtype=np.float32)
    tiny = np.float32(1e-30) * np.arange(-50, 51, dtype=np.float32)
    x = np.concatenate([dense, tiny, np.array([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf], np.float32)])
    err = np.abs(tanh_all(x).astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert err.max() <= TANH32_MAX_ERROR
    assert err.max() > TANH32_MAX_ERROR / 20  # the bound is stated tightly, not loosely
    assert np.all(np.abs(tanh_all(x)) <= 1.0)


def test_tanh32_keeps_nan(tanh_all):
    out = tanh_all(np.array([np.nan, 1.0], np.float32))
    assert np.isnan(out[0]) and np.isfinite(out[1])


def _step_inputs(B=5, H=7, seed=0, scale=3.0):
    """A step's recurrent product, input projection and c<t-1>: (B, G), (B, G), (B, H) float32."""
    rng = np.random.default_rng(seed)
    product, xp = ((scale * rng.standard_normal((B, 4 * H))).astype(np.float32) for _ in range(2))
    c_prev = rng.standard_normal((B, H)).astype(np.float32)
    return product, xp, c_prev


def test_forward_step_matches_the_exact_step_within_the_bound():
    product, xp, c_prev = _step_inputs()
    B, H = c_prev.shape
    outs32 = [np.empty((B, H), np.float32) for _ in range(3)]
    g32 = product.copy()
    fused.lstm_forward_step(g32, xp, c_prev, *outs32)
    outs64 = [np.empty((B, H)) for _ in range(3)]
    g64 = product.astype(np.float64)
    with np.errstate(over="ignore", under="ignore"):
        cells._lstm_forward_step(g64, xp.astype(np.float64), c_prev.astype(np.float64), *outs64)
    # gates err by <= bound (sigmoid by half of it); c<t> = u c~ + f c<t-1> sums two such errors scaled by
    # |c~| <= 1 and |c<t-1>|; a<t> adds tanh's error on top. float32 rounding adds a few 1e-7.
    c_scale = 1 + np.abs(c_prev).max()
    np.testing.assert_allclose(g32, g64, rtol=0, atol=TANH32_MAX_ERROR + 2e-7)
    np.testing.assert_allclose(outs32[0], outs64[0], rtol=0, atol=c_scale * (2 * TANH32_MAX_ERROR + 4e-7))
    np.testing.assert_allclose(outs32[2], outs64[2], rtol=0, atol=c_scale * (4 * TANH32_MAX_ERROR + 8e-7))


def test_backward_step_matches_the_exact_step():
    rng = np.random.default_rng(1)
    g, xp, c_prev = _step_inputs(seed=2)
    B, H = c_prev.shape
    c, tanh_c, a = (np.empty((B, H), np.float32) for _ in range(3))
    fused.lstm_forward_step(g, xp, c_prev, c, tanh_c, a)
    da_out, da_next, dc = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(3))
    dz32, dc32 = np.empty((B, 4 * H), np.float32), dc.copy()
    fused.lstm_backward_step(g, tanh_c, c_prev, da_out, da_next.copy(), dc32, dz32)
    dz64, dc64 = np.empty((B, 4 * H)), dc.astype(np.float64)
    as64 = [v.astype(np.float64) for v in (g, tanh_c, c_prev, da_out, da_next)]
    cells._lstm_backward_step(*as64, dc64, dz64)  # the same gates in, so only float32 rounding differs
    np.testing.assert_allclose(dz32, dz64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dc32, dc64, rtol=1e-5, atol=1e-6)


def test_a_float32_lstm_layer_follows_the_float64_one():
    rng = np.random.default_rng(3)
    T, B, H = 12, 4, 16
    xp = rng.standard_normal((T, B, 4 * H))
    Wh = rng.standard_normal((H, 4 * H)) / np.sqrt(H)
    state = (0.5 * rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    da = rng.standard_normal((T, B, H))
    results = {}
    for dtype in (np.float32, np.float64):
        a, final, cache = cells.sequence_forward("lstm", xp.astype(dtype), tuple(s.astype(dtype) for s in state),
                                                 Wh.astype(dtype))
        results[dtype] = (a.copy(), final, cells.sequence_backward(da.astype(dtype), cache))
    a32, final32, (dxp32, dstate32, dWh32) = results[np.float32]
    a64, final64, (dxp64, dstate64, dWh64) = results[np.float64]
    np.testing.assert_allclose(a32, a64, rtol=0, atol=2e-5)
    np.testing.assert_allclose(final32[1], final64[1], rtol=0, atol=5e-5)
    np.testing.assert_allclose(dxp32, dxp64, rtol=0, atol=5e-5 * np.abs(dxp64).max())
    np.testing.assert_allclose(dWh32, dWh64, rtol=0, atol=5e-5 * np.abs(dWh64).max())
    np.testing.assert_allclose(dstate32[1], dstate64[1], rtol=0, atol=5e-5 * np.abs(dstate64[1]).max())


def test_a_nan_reaches_the_outputs_and_gradients():
    z, xp, c_prev = _step_inputs()
    z[1, 3] = np.nan  # Γu of unit 3 in row 1
    B, H = c_prev.shape
    c, tanh_c, a = (np.empty((B, H), np.float32) for _ in range(3))
    fused.lstm_forward_step(z, xp, c_prev, c, tanh_c, a)
    assert np.isnan(a[1, 3]) and np.isnan(c[1, 3])
    assert np.isfinite(np.delete(a.ravel(), 1 * H + 3)).all()
    dz, dc = np.empty((B, 4 * H), np.float32), np.ones((B, H), np.float32)
    fused.lstm_backward_step(z, tanh_c, c_prev, np.ones((B, H), np.float32), np.zeros((B, H), np.float32), dc, dz)
    assert np.isnan(dz[1, 3])


def _attention_inputs(B=3, T=4, S=5, A=16, seed=4):
    """q Wq (B, T, A), e Wk (B, S, A), b and v (A,), and a scores' gradient (B, T, S) with padded sources
    (zero there, as the softmax's backward leaves it)."""
    rng = np.random.default_rng(seed)
    qp, keys = rng.standard_normal((B, T, A)), rng.standard_normal((B, S, A))
    bias, v = 0.5 * rng.standard_normal(A), rng.standard_normal(A)
    dscores = rng.standard_normal((B, T, S))
    dscores[0, :, 3:] = 0.0
    return qp, keys, bias, v, dscores


def test_additive_forward_matches_the_exact_scores_within_the_bound():
    qp, keys, bias, v, _ = _attention_inputs()
    B, T, A = qp.shape
    S = keys.shape[1]
    u, scores = np.empty((B, T, S, A), np.float32), np.empty((B, T, S), np.float32)
    fused.additive_forward(*(x.astype(np.float32) for x in (qp, keys, bias, v)), u, scores)
    exact_u = np.tanh(qp[:, :, None, :] + keys[:, None, :, :] + bias)
    np.testing.assert_allclose(u, exact_u, rtol=0, atol=TANH32_MAX_ERROR + 4e-7)
    # a score sums A products of v with u, each off by at most u's error (and float32 rounding)
    np.testing.assert_allclose(scores, exact_u @ v, rtol=0, atol=np.abs(v).sum() * (TANH32_MAX_ERROR + 4e-7) + 1e-5)


def test_additive_backward_matches_the_exact_gradients():
    qp, keys, bias, v, dscores = _attention_inputs(seed=5)
    u = np.tanh(qp[:, :, None, :] + keys[:, None, :, :] + bias)
    B, T, S, A = u.shape
    dqp, dkeys = np.full((B, T, A), np.nan, np.float32), np.full((B, S, A), np.nan, np.float32)  # overwritten
    dv, db = np.full(A, np.nan, np.float32), np.full(A, np.nan, np.float32)
    fused.additive_backward(u.astype(np.float32), dscores.astype(np.float32), v.astype(np.float32), dqp, dkeys, dv,
                            db)
    dpre = dscores[..., None] * v * (1 - u * u)
    np.testing.assert_allclose(dv, (dscores[..., None] * u).sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, dpre.sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dqp, dpre.sum(axis=2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dkeys, dpre.sum(axis=1), rtol=1e-5, atol=1e-5)
    assert not dkeys[0, 3:].any()  # padded sources get nothing
