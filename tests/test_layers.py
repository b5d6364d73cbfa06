"""Layers: float64 gradient checks of every forward/backward pair on random small shapes (T = 1 and B = 1
included), the segment sum against np.add.at (at block edges, and per block for a word batch), the masked
softmax cross-entropy, dropout, workspaces."""

import numpy as np
import pytest
from reference import seed_of

from charlm.engine import layers
from charlm.engine.gradcheck import numeric_gradient, rel_error

SHAPES = [(1, 1), (1, 4), (3, 1), (5, 3)]  # (T, B)


def check(f, value, analytic, name, h=1e-5):
    numeric = numeric_gradient(f, value, np.arange(value.size), h)
    err = rel_error(np.asarray(analytic).reshape(-1), numeric)
    assert err < 1e-7, f"d{name}: rel error {err:.2e}"


@pytest.mark.parametrize("T,B", SHAPES)
def test_embedding_gradcheck(T, B):
    rng = np.random.default_rng(seed_of("embed", T, B))
    V, E = 4, 3
    W, ids, dout = rng.standard_normal((V, E)), rng.integers(0, V, (T, B)), rng.standard_normal((T, B, E))
    out, cache = layers.embedding_forward(W, ids)
    np.testing.assert_array_equal(out, W[ids])
    check(lambda: float(np.sum(layers.embedding_forward(W, ids)[0] * dout)), W,
          layers.embedding_backward(dout, cache), "W")


@pytest.mark.parametrize("T,B", SHAPES)
def test_onehot_affine_equals_a_one_hot_product_and_gradchecks(T, B):
    rng = np.random.default_rng(seed_of("onehot", T, B))
    V, M = 5, 4
    W, b = rng.standard_normal((V, M)), rng.standard_normal(M)
    ids, dout = rng.integers(0, V, (T, B)), rng.standard_normal((T, B, M))
    out, cache = layers.onehot_affine_forward(ids, W, b)
    np.testing.assert_allclose(out, np.eye(V)[ids] @ W + b, rtol=0, atol=1e-14)
    dW, db = layers.onehot_affine_backward(dout, cache)

    def f():
        return float(np.sum(layers.onehot_affine_forward(ids, W, b)[0] * dout))

    check(f, W, dW, "W")
    check(f, b, db, "b")


@pytest.mark.parametrize("T,B", SHAPES)
def test_affine_gradcheck(T, B):
    rng = np.random.default_rng(seed_of("affine", T, B))
    D, M = 3, 4
    x, W, b = rng.standard_normal((T, B, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    dout = rng.standard_normal((T, B, M))
    out, cache = layers.affine_forward(x, W, b)
    np.testing.assert_allclose(out, x @ W + b, rtol=0, atol=1e-14)
    dx, dW, db = layers.affine_backward(dout, cache)

    def f():
        return float(np.sum(layers.affine_forward(x, W, b)[0] * dout))

    for name, value, analytic in (("x", x, dx), ("W", W, dW), ("b", b, db)):
        check(f, value, analytic, name)


@pytest.mark.parametrize("T,B", SHAPES)
def test_dropout_gradcheck_and_scaling(T, B):
    rng = np.random.default_rng(seed_of("dropout", T, B))
    x, dout = rng.standard_normal((T, B, 6)), rng.standard_normal((T, B, 6))
    out, mask = layers.dropout_forward(x, 0.5, np.random.default_rng(7))
    assert set(np.unique(mask)) <= {0.0, 2.0}
    np.testing.assert_array_equal(out, x * mask)

    def f():
        return float(np.sum(layers.dropout_forward(x, 0.5, np.random.default_rng(7))[0] * dout))

    check(f, x, layers.dropout_backward(dout.copy(), mask), "x")
    same, cache = layers.dropout_forward(x, 0.0, None)
    assert same is x and cache is None
    d = dout.copy()
    assert layers.dropout_backward(d, None) is d


def test_dropout_keeps_each_unit_with_probability_one_minus_p():
    x = np.ones((50, 20, 30), np.float32)
    out, _ = layers.dropout_forward(x, 0.3, np.random.default_rng(0))
    kept = np.count_nonzero(out) / out.size
    assert abs(kept - 0.7) < 0.02 and np.allclose(out[out != 0], 1 / 0.7)


def softmax_nll_reference(logits, targets, weights):
    m = logits.max(axis=1)
    log_sum_exp = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
    nll = log_sum_exp - logits[np.arange(len(targets)), targets]
    return float((weights * nll).sum() / weights.sum()), nll


@pytest.mark.parametrize("N,V", [(1, 1), (1, 4), (6, 3), (9, 7)])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_nll_matches_reference_and_gradchecks(N, V, weighted):
    rng = np.random.default_rng(seed_of("softmax", N, V, weighted))
    logits, targets = 3 * rng.standard_normal((N, V)), rng.integers(0, V, N)
    weights = rng.integers(0, 3, N).astype(float) if weighted else None
    if weighted:
        weights[0] = 1.0  # a positive sum
    loss, nll, cache = layers.softmax_nll_forward(logits.copy(), targets, weights)
    ref_loss, ref_nll = softmax_nll_reference(logits, targets, np.ones(N) if weights is None else weights)
    assert loss == pytest.approx(ref_loss, abs=1e-13)
    np.testing.assert_allclose(nll, ref_nll, rtol=0, atol=1e-13)
    dlogits = layers.softmax_nll_backward(cache)
    check(lambda: layers.softmax_nll_forward(logits.copy(), targets, weights)[0], logits, dlogits, "logits")
    if weighted:
        assert not dlogits[weights == 0].any()  # a target of weight 0 gets exactly no gradient


def test_softmax_nll_survives_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], np.float32)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # exp may underflow to 0: that is right
        loss, nll, cache = layers.softmax_nll_forward(logits, np.array([0, 2]), None)
        dlogits = layers.softmax_nll_backward(cache)
    np.testing.assert_allclose(nll, [0.0, np.log(3)], atol=1e-6)
    assert np.all(np.isfinite(dlogits))


@pytest.mark.parametrize("N,V,M", [(1, 1, 1), (1, 5, 3), (7, 3, 4), (40, 6, 2), (1000, 3, 5)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_segment_sum_equals_add_at(N, V, M, dtype):
    # (1000, 3, 5): ids repeated beyond SEGMENT_BLOCK rows, summed over several blocks.
    rng = np.random.default_rng(seed_of("segment", N, V, M))
    values = rng.standard_normal((N, M)).astype(dtype)
    ids = rng.integers(0, V, N)
    if V > 1:
        ids[ids == V - 1] = 0  # leave an id absent
    expected = np.zeros((V, M), dtype)
    np.add.at(expected, ids, values)
    got = layers.segment_sum(values, ids, V)
    assert got.dtype == dtype and got.shape == (V, M)
    tol = 1e-12 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
    if V > 1:
        assert not got[V - 1].any()


@pytest.mark.parametrize("counts", [[256, 256, 10], [255, 2, 600], [1] * 300, [700]])
def test_segment_sum_runs_across_block_edges(counts):
    # Runs that end exactly at a block edge, cross one edge, fill many blocks, or are all of length one.
    rng = np.random.default_rng(seed_of("segment-edges", *counts))
    ids = rng.permutation(np.repeat(3 * np.arange(len(counts)), counts))
    values = rng.standard_normal((len(ids), 3))
    expected = np.zeros((3 * len(counts), 3))
    np.add.at(expected, ids, values)
    np.testing.assert_allclose(layers.segment_sum(values, ids, 3 * len(counts)), expected, rtol=0, atol=1e-12)


def test_segment_sum_of_a_word_batch_loops_per_block_not_per_id(monkeypatch):
    # V = 10,000 and hundreds of distinct ids in N = 700 rows: one gather per block of rows, whatever V is.
    rng = np.random.default_rng(3)
    V, N = 10_000, 700
    ids = rng.choice(rng.choice(V, 400, replace=False), N)
    values = rng.standard_normal((N, 8))
    expected = np.zeros((V, 8))
    np.add.at(expected, ids, values)
    gathers = []

    class CountingNumpy:  # the numpy module, counting np.take calls
        def __getattr__(self, name):
            return getattr(np, name)

        def take(self, *args, **kwargs):
            gathers.append(1)
            return np.take(*args, **kwargs)

    monkeypatch.setattr(layers, "np", CountingNumpy())
    got = layers.segment_sum(values, ids, V)
    assert len(np.unique(ids)) > 300
    assert len(gathers) == -(-N // layers.SEGMENT_BLOCK)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("T,B", SHAPES)
def test_affine_transposed_gradcheck(T, B):
    rng = np.random.default_rng(seed_of("affine-transposed", T, B))
    D, M = 3, 5
    x, W, b = rng.standard_normal((T, B, D)), rng.standard_normal((M, D)), rng.standard_normal(M)
    dout = rng.standard_normal((T, B, M))
    out, cache = layers.affine_transposed_forward(x, W, b)
    np.testing.assert_allclose(out, x @ W.T + b, rtol=0, atol=1e-14)
    dx, dW, db = layers.affine_transposed_backward(dout, cache)
    assert dW.shape == (M, D)

    def f():
        return float(np.sum(layers.affine_transposed_forward(x, W, b)[0] * dout))

    for name, value, analytic in (("x", x, dx), ("W", W, dW), ("b", b, db)):
        check(f, value, analytic, name)


@pytest.mark.parametrize("id_dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64])
def test_segment_sum_accepts_any_integer_id_dtype(id_dtype):
    rng = np.random.default_rng(1)
    values, ids = rng.standard_normal((30, 4)), rng.integers(0, 6, 30)
    np.testing.assert_array_equal(layers.segment_sum(values, ids.astype(id_dtype), 6),
                                  layers.segment_sum(values, ids, 6))


def test_workspace_buffers_are_reused_and_give_the_same_results():
    rng = np.random.default_rng(2)
    ids, dout = rng.integers(0, 5, (4, 3)), rng.standard_normal((4, 3, 6)).astype(np.float32)
    W, b = rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    fresh = layers.onehot_affine_backward(dout, layers.onehot_affine_forward(ids, W, b)[1])
    ws = {}
    for _ in range(2):
        out, cache = layers.onehot_affine_forward(ids, W, b, ws=ws, tag="x.")
        dW, db = layers.onehot_affine_backward(dout, cache)
        np.testing.assert_array_equal(dW, fresh[0])
        np.testing.assert_array_equal(db, fresh[1])
        n = len(ws)
    assert len(ws) == n > 0


def test_softmax_of_a_confident_model_makes_no_subnormal_floats_and_keeps_the_loss_exact():
    # Logits spread over hundreds of nats (a confident word model): exp of the far ones would be subnormal
    # floats, which CPUs process many times slower; the floor keeps every value normal or zero.
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((64, 500)) * 80).astype(np.float32)
    targets = rng.integers(500, size=64)
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exact = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(64), targets]
    loss, nll, cache = layers.softmax_nll_forward(logits.copy(), targets)
    np.testing.assert_allclose(nll, exact, rtol=1e-5)  # far targets keep their whole loss, not the floor's
    dlogits = layers.softmax_nll_backward(cache)
    tiny = np.finfo(np.float32).tiny
    assert np.all((dlogits == 0) | (np.abs(dlogits) >= tiny))
    assert np.all((cache[0] == 0) | (np.abs(cache[0]) >= tiny))
