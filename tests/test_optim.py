"""Optimisers against plainly written reference updates, clipping, and slot round trips."""

import math

import numpy as np
import pytest

from charlm.engine.optim import OPTIMIZERS, clip_gradients, global_norm, make_optimizer


def _params(rng):
    return {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}


def _grads_sequence(rng, n):
    return [{"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)} for _ in range(n)]


def _reference_adam(p, gs, lr, wd=0.0, decoupled=False, b1=0.9, b2=0.999, eps=1e-8):
    p = {k: v.copy() for k, v in p.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t, g in enumerate(gs, start=1):
        for k in p:
            grad = g[k].copy()
            if wd and p[k].ndim >= 2:
                if decoupled:
                    p[k] = p[k] * (1 - lr * wd)
                else:
                    grad = grad + wd * p[k]
            m[k] = b1 * m[k] + (1 - b1) * grad
            v[k] = b2 * v[k] + (1 - b2) * grad**2
            mhat = m[k] / (1 - b1**t)
            vhat = v[k] / (1 - b2**t)
            p[k] = p[k] - lr * mhat / (np.sqrt(vhat) + eps)
    return p


@pytest.mark.parametrize("name,wd", [("adam", 0.0), ("adam", 0.1), ("adamw", 0.1)])
def test_adam_matches_reference(name, wd):
    rng = np.random.default_rng(0)
    params = _params(rng)
    grads = _grads_sequence(rng, 5)
    expected = _reference_adam(params, grads, lr=0.01, wd=wd, decoupled=name == "adamw")
    opt = make_optimizer(name, params, weight_decay=wd)
    for g in grads:
        opt.step(params, {k: v.copy() for k, v in g.items()}, 0.01)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-6, atol=1e-12)


def test_sgd_rmsprop_adagrad_match_reference():
    rng = np.random.default_rng(1)
    start = _params(rng)
    grads = _grads_sequence(rng, 4)
    lr = 0.05

    ref_sgd = {k: v.copy() for k, v in start.items()}
    buf = {k: np.zeros_like(v) for k, v in start.items()}
    ref_rms = {k: v.copy() for k, v in start.items()}
    sq = {k: np.zeros_like(v) for k, v in start.items()}
    ref_ada = {k: v.copy() for k, v in start.items()}
    acc = {k: np.zeros_like(v) for k, v in start.items()}
    for g in grads:
        for k in start:
            buf[k] = 0.9 * buf[k] + g[k]
            ref_sgd[k] = ref_sgd[k] - lr * buf[k]
            sq[k] = 0.95 * sq[k] + 0.05 * g[k] ** 2
            ref_rms[k] = ref_rms[k] - lr * g[k] / (np.sqrt(sq[k]) + 1e-8)
            acc[k] = acc[k] + g[k] ** 2
            ref_ada[k] = ref_ada[k] - lr * g[k] / (np.sqrt(acc[k]) + 1e-8)

    for name, ref in (("sgd", ref_sgd), ("rmsprop", ref_rms), ("adagrad", ref_ada)):
        params = {k: v.copy() for k, v in start.items()}
        opt = make_optimizer(name, params, momentum=0.9)
        for g in grads:
            opt.step(params, {k: v.copy() for k, v in g.items()}, lr)
        for k in params:
            np.testing.assert_allclose(params[k], ref[k], rtol=1e-10, err_msg=f"{name} {k}")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_minimises_a_quadratic(name):
    rng = np.random.default_rng(2)
    target = rng.standard_normal((5, 5))
    params = {"W": np.zeros((5, 5))}
    opt = make_optimizer(name, params, momentum=0.9)
    lr = {"adagrad": 0.5, "sgd": 0.05}.get(name, 0.05)
    start = np.sum((params["W"] - target) ** 2)
    for _ in range(500):
        opt.step(params, {"W": 2 * (params["W"] - target)}, lr)
    assert np.sum((params["W"] - target) ** 2) < 1e-3 * start


def test_slots_round_trip_continue_identically():
    rng = np.random.default_rng(3)
    params_a = _params(rng)
    params_b = {k: v.copy() for k, v in params_a.items()}
    grads = _grads_sequence(rng, 6)
    opt_a = make_optimizer("adam", params_a)
    for g in grads[:3]:
        opt_a.step(params_a, {k: v.copy() for k, v in g.items()}, 0.01)
    opt_b = make_optimizer("adam", params_b)
    for g in grads[:3]:
        opt_b.step(params_b, {k: v.copy() for k, v in g.items()}, 0.01)
    # Move b's slots into a fresh optimiser, as a resume does.
    saved = {k: v.copy() for k, v in opt_b.state_arrays().items()}
    opt_c = make_optimizer("adam", params_b)
    opt_c.load_state_arrays(saved, opt_b.steps)
    for g in grads[3:]:
        opt_a.step(params_a, {k: v.copy() for k, v in g.items()}, 0.01)
        opt_c.step(params_b, {k: v.copy() for k, v in g.items()}, 0.01)
    for k in params_a:
        assert np.array_equal(params_a[k], params_b[k])


def test_load_state_arrays_rejects_mismatch():
    params = {"W": np.zeros((2, 2))}
    opt = make_optimizer("adam", params)
    with pytest.raises(ValueError, match="differ"):
        opt.load_state_arrays({"m/W": np.zeros((2, 2))}, 1)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_arrays({"m/W": np.zeros((3, 2)), "v/W": np.zeros((2, 2))}, 1)


def test_clip_norm_rescales_to_threshold():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}
    norm = clip_gradients(grads, 1.0, "norm")
    assert norm == pytest.approx(5.0)
    assert global_norm(grads) == pytest.approx(1.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])


def test_clip_norm_leaves_small_gradients_alone():
    grads = {"a": np.array([0.3, 0.4])}
    clip_gradients(grads, 1.0, "norm")
    np.testing.assert_array_equal(grads["a"], [0.3, 0.4])


def test_clip_value_clamps_each_coordinate():
    grads = {"a": np.array([-7.0, 0.5, 9.0])}
    norm = clip_gradients(grads, 5.0, "value")
    assert norm == pytest.approx(math.sqrt(49 + 0.25 + 81))
    np.testing.assert_array_equal(grads["a"], [-5.0, 0.5, 5.0])


def test_clip_reports_nan_instead_of_hiding_it():
    grads = {"a": np.array([np.nan, 1.0])}
    assert math.isnan(clip_gradients(grads, 5.0, "value"))
    assert np.isnan(grads["a"][0])
