"""Fused float32 kernels, compiled with numba: the LSTM's per-step elementwise work, and the scores of
additive attention with their backward.

Letters: B batch, H hidden, G = 4 * H (gates stacked [u, f, o, c~] as in `charlm.engine.cells`); T target
steps, S source steps, A attention units.

numpy runs a step's gate arithmetic as about a dozen separate passes (ufuncs) over strided views of the
(B, G) gate buffer; one compiled loop per row reads each value once and keeps the rest in registers. Additive
attention is the same story one size up: numpy builds its (B, T, S, A) tanh in four passes with as many
temporaries, and takes six more to send the scores' gradient back through it; one loop over each (t, s) row
of A units does either in a single pass. The
kernels are float32 only, because their tanh is an approximation: Eigen's rational fast tanh, clamped to
|x| <= TANH32_CLAMP where float32 tanh is 1 within rounding, with |error| <= TANH32_MAX_ERROR against the
exact tanh (the tests pin it); σ(z) = (tanh(z / 2) + 1) / 2 then errs by at most half that. float64 (the
gradient checks) keeps the exact numpy path in `charlm.engine.cells`.

A NaN stays NaN (the clamp compares, so a NaN passes it untouched, and no fast-math flag assumes NaNs away),
so a diverging run still shows up in its loss. Each row is a contiguous 1-D slice, which lets LLVM vectorise
the loop; `error_model="numpy"` drops the division-by-zero check that would stop it (q >= 0.0048 here).

Kernels compile on first use and numba caches them on disk (`cache=True`: beside this file when writable,
else in numba's per-user cache directory), so later processes load them instead of compiling.
"""

import numba

from charlm.engine.backend import np

__all__ = ["TANH32_CLAMP", "TANH32_MAX_ERROR", "additive_backward", "additive_forward", "lstm_backward_step",
           "lstm_forward_step", "lstm_infer_step", "tanh32"]

TANH32_CLAMP = 7.90531110763549805
TANH32_MAX_ERROR = 4e-7

# tanh(x) ~ x * P(x^2) / Q(x^2) on [-TANH32_CLAMP, TANH32_CLAMP] (Eigen's generic_fast_tanh_float)
_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
      1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
# nogil: forward-only inference runs blocks of a batch's rows in threads (`charlm.engine.rows`), each calling
# these kernels between its own matrix products.
_JIT = {"error_model": "numpy", "boundscheck": False, "fastmath": {"contract", "arcp", "nsz"}, "nogil": True}


@numba.njit(inline="always", **_JIT)
def tanh32(x):
    """tanh of one float32 within TANH32_MAX_ERROR (see the module docstring)."""
    clamp = np.float32(TANH32_CLAMP)
    if x > clamp:
        x = clamp
    elif x < -clamp:
        x = -clamp
    x2 = x * x
    p = np.float32(_P[0])
    p = x2 * p + np.float32(_P[1])
    p = x2 * p + np.float32(_P[2])
    p = x2 * p + np.float32(_P[3])
    p = x2 * p + np.float32(_P[4])
    p = x2 * p + np.float32(_P[5])
    p = x2 * p + np.float32(_P[6])
    q = x2 * np.float32(_Q[0]) + np.float32(_Q[1])
    q = x2 * q + np.float32(_Q[2])
    q = x2 * q + np.float32(_Q[3])
    return x * p / q


@numba.njit(inline="always", **_JIT)
def _gate_rows(m, b, H):
    """Row b of a (B, 4H) gate-stacked array as its four contiguous (H,) gate slices (u, f, o, c~)."""
    return m[b, :H], m[b, H:2 * H], m[b, 2 * H:3 * H], m[b, 3 * H:]


@numba.njit(cache=True, **_JIT)
def lstm_forward_step(g, xp, c_prev, c, tanh_c, a):
    """One LSTM step after the product, in place.

    Inputs:
    - g: the recurrent product a<t-1> Wh, of shape (B, G); overwritten with the gates [Γu, Γf, Γo, c~]
    - xp: the step's input projection xp<t>, of shape (B, G) (z = a<t-1> Wh + xp<t>)
    - c_prev: c<t-1>, of shape (B, H)
    - c, tanh_c, a: outputs c<t>, tanh(c<t>) and a<t>, each of shape (B, H)
    """
    B, G = g.shape
    H = G // 4
    half = np.float32(0.5)
    for b in range(B):
        zu, zf, zo, zc = _gate_rows(g, b, H)
        xu, xf, xo, xc = _gate_rows(xp, b, H)
        cp, cb, tb, ab = c_prev[b], c[b], tanh_c[b], a[b]
        for h in range(H):
            u = half * tanh32(half * (zu[h] + xu[h])) + half  # Γu = σ(z_u) = (tanh(z_u / 2) + 1) / 2
            f = half * tanh32(half * (zf[h] + xf[h])) + half  # Γf = σ(z_f)
            o = half * tanh32(half * (zo[h] + xo[h])) + half  # Γo = σ(z_o)
            ct = tanh32(zc[h] + xc[h])  # c~<t> = tanh(z_c)
            zu[h], zf[h], zo[h], zc[h] = u, f, o, ct
            cell = u * ct + f * cp[h]  # c<t> = Γu * c~<t> + Γf * c<t-1>
            cb[h] = cell
            t = tanh32(cell)
            tb[h] = t
            ab[h] = o * t  # a<t> = Γo * tanh(c<t>)


@numba.njit(cache=True, **_JIT)
def lstm_infer_step(g, xp, rows, c, a):
    """One LSTM step of forward-only inference, in place: no gates or tanh(c<t>) kept for a backward.

    Inputs:
    - g: the recurrent product a<t-1> Wh, of shape (B, G) (read only)
    - xp: input projections, of shape (R, G): row rows[b] is stream b's xp<t>. A one-hot layer passes its
      table Wx + b (V, G) and the step's ids, so no (T, B, G) projection is ever gathered; a layer reading
      features passes its projections of the chunk (T * B, G) and each stream's row in them (a reverse
      direction reads them in reverse by its row numbers alone)
    - rows: of shape (B,), integers
    - c: c<t-1>, of shape (B, H); overwritten with c<t>
    - a: output a<t>, of shape (B, H)
    """
    B, G = g.shape
    H = G // 4
    half = np.float32(0.5)
    for b in range(B):
        zu, zf, zo, zc = _gate_rows(g, b, H)
        xu, xf, xo, xc = _gate_rows(xp, rows[b], H)
        cb, ab = c[b], a[b]
        for h in range(H):
            u = half * tanh32(half * (zu[h] + xu[h])) + half  # Γu = σ(z_u) = (tanh(z_u / 2) + 1) / 2
            f = half * tanh32(half * (zf[h] + xf[h])) + half  # Γf = σ(z_f)
            o = half * tanh32(half * (zo[h] + xo[h])) + half  # Γo = σ(z_o)
            cell = u * tanh32(zc[h] + xc[h]) + f * cb[h]  # c<t> = Γu * c~<t> + Γf * c<t-1>
            cb[h] = cell
            ab[h] = o * tanh32(cell)  # a<t> = Γo * tanh(c<t>)


@numba.njit(cache=True, **_JIT)
def lstm_backward_step(g, tanh_c, c_prev, da_out, da_next, dc, dz):
    """One LSTM step of the backward pass before the product dz Wh^T, in place.

    Inputs:
    - g: the step's gates [Γu, Γf, Γo, c~], of shape (B, G); tanh_c: tanh(c<t>); c_prev: c<t-1> (B, H)
    - da_out: the layers above's gradient of a<t>; da_next: the gradient step t+1 sent to a<t> (B, H)
    - dc: dc<t> from step t+1, of shape (B, H); overwritten with dc<t-1>
    - dz: output, the pre-activations' gradient [dz_u, dz_f, dz_o, dz_c], of shape (B, G)
    """
    B, G = g.shape
    H = G // 4
    one = np.float32(1.0)
    for b in range(B):
        gu, gf, go, gc = _gate_rows(g, b, H)
        du, df, do, dct = _gate_rows(dz, b, H)
        tb, cp, dab, dan, dcb = tanh_c[b], c_prev[b], da_out[b], da_next[b], dc[b]
        for h in range(H):
            u, f, o, ct, t = gu[h], gf[h], go[h], gc[h], tb[h]
            da = dab[h] + dan[h]  # da<t> = da_out<t> + da<t> from step t+1
            d = dcb[h] + da * o * (one - t * t)  # dc<t> += da<t> * Γo * (1 - tanh(c<t>)^2)
            dcb[h] = d * f  # dc<t-1> = dc<t> * Γf
            du[h] = d * ct * u * (one - u)  # dz_u = dc<t> * c~<t> * Γu * (1 - Γu)
            df[h] = d * cp[h] * f * (one - f)  # dz_f = dc<t> * c<t-1> * Γf * (1 - Γf)
            do[h] = da * t * o * (one - o)  # dz_o = da<t> * tanh(c<t>) * Γo * (1 - Γo)
            dct[h] = d * u * (one - ct * ct)  # dz_c = dc<t> * Γu * (1 - c~^2)


@numba.njit(cache=True, **_JIT)
def additive_forward(qp, keys, bias, v, u, scores):
    """Additive attention's hidden units and scores, into `u` and `scores`.

    Inputs:
    - qp: the queries' projection q Wq, of shape (B, T, A); keys: the sources' e Wk, of shape (B, S, A)
    - bias, v: the attention's bias and scoring vector, each of shape (A,)
    - u: output, tanh(q Wq + e Wk + b), of shape (B, T, S, A); scores: output, v · u, of shape (B, T, S)
    """
    B, T, S, A = u.shape
    for b in range(B):
        for t in range(T):
            q = qp[b, t]
            for s in range(S):
                k, row = keys[b, s], u[b, t, s]
                total = np.float32(0.0)
                for j in range(A):
                    h = tanh32(q[j] + k[j] + bias[j])  # u = tanh(q Wq + e Wk + b)
                    row[j] = h
                    total += h * v[j]  # score = v · u
                scores[b, t, s] = total


@numba.njit(cache=True, **_JIT)
def additive_backward(u, dscores, v, dqp, dkeys, dv, db):
    """The scores' gradient sent back through additive attention, in one pass over `u`.

    Inputs:
    - u: tanh(q Wq + e Wk + b) from `additive_forward`, of shape (B, T, S, A); dscores: (B, T, S)
    - v: the scoring vector (A,)
    - dqp, dkeys: outputs, the gradients of q Wq (B, T, A) and of e Wk (B, S, A), overwritten
    - dv, db: outputs, the gradients of v and of the bias (A,), overwritten
    """
    B, T, S, A = u.shape
    one = np.float32(1.0)
    dqp[:] = 0.0
    dkeys[:] = 0.0
    dv[:] = 0.0
    db[:] = 0.0
    for b in range(B):
        for t in range(T):
            dq = dqp[b, t]
            for s in range(S):
                d, row, dk = dscores[b, t, s], u[b, t, s], dkeys[b, s]
                if d == 0.0:  # a padded source step: nothing flows back
                    continue
                for j in range(A):
                    h = row[j]
                    dv[j] += d * h  # dv = Σ d score * u
                    dpre = d * v[j] * (one - h * h)  # d pre = d score * v * (1 - u²)
                    db[j] += dpre  # db = Σ d pre
                    dq[j] += dpre  # d (q Wq) = Σ_s d pre
                    dk[j] += dpre  # d (e Wk) = Σ_t d pre
