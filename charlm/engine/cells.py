"""Recurrent cells as sequence-level forward/backward pairs, with the time loop inside.

Letters: T time, B batch, H hidden, G = gates * H (the stacked pre-activation width).

Notation (the lecture's): a<t> is the layer's output at step t, c<t> the memory cell (a GRU's c<t> is its
a<t>), Γu, Γr, Γf, Γo the update, reset, forget and output gates, c~<t> the candidate, σ the logistic,
* the elementwise product, z a pre-activation. The caller computes every step's input projection
xp<t> = x<t> Wx + b in one product before the loop and turns the returned dxp into dWx, db and dx after it;
dWh is one product over all steps.

Each layer's weights are stacked over its gates, columns in this order (sigmoid gates first, the tanh
candidate last), so one step costs one matrix product for all gates (two for the full GRU):
- rnn        [a]            a<t> = g(a<t-1> Wh + xp<t>), g = tanh or relu
- gru-simple [u, c~]        Γu = σ(c<t-1> Wh_u + xp_u<t>), c~<t> = tanh(c<t-1> Wh_c + xp_c<t>),
                            c<t> = Γu * c~<t> + (1 - Γu) * c<t-1>
- gru        [u, r, c~]     Γu, Γr = σ(c<t-1> Wh_ur + xp_ur<t>), c~<t> = tanh((Γr * c<t-1>) Wh_c + xp_c<t>),
                            c<t> as gru-simple: the reset gate scales c<t-1> BEFORE the candidate's product
- lstm       [u, f, o, c~]  Γu, Γf, Γo = σ(a<t-1> Wh_ufo + xp_ufo<t>), c~<t> = tanh(a<t-1> Wh_c + xp_c<t>),
                            c<t> = Γu * c~<t> + Γf * c<t-1>,  a<t> = Γo * tanh(c<t>)

Other libraries' recurrent layers stack the same gates in other row orders, and their GRUs keep 1 - Γu:
`charlm.export.gates` maps these columns to ONNX's and PyTorch's layouts (and says why PyTorch's GRU, which
resets after the recurrent product, cannot hold the lecture's).

Speed: the backward products use a contiguous copy of Wh^T made once per chunk; a float32 LSTM runs each
step's elementwise work in the fused kernels of `charlm.engine.fused` (float64 runs the exact numpy steps
here, which those kernels are tested against).

`sequence_forward(cell, xp, state, Wh)` returns `(a_out, final_state, cache)`, `sequence_backward(da_out,
cache)` returns `(dxp, dstate, dWh)`. Inside, `a_all` (T+1, B, H) holds a<0..T> with a<0> (the initial state)
in row 0, and `a_out = a_all[1:]` (T, B, H) holds a<1..T>, the layer's outputs; `c_all` likewise. Nothing is
kept between calls except in the optional workspace (see `charlm.engine.backend`).
"""

import functools

from charlm.engine.backend import buffer, np

CELLS = ("rnn", "gru", "gru-simple", "lstm")
GATES = {"rnn": 1, "gru-simple": 2, "gru": 3, "lstm": 4}
STATE_ARRAYS = {"rnn": 1, "gru-simple": 1, "gru": 1, "lstm": 2}
GATE_NAMES = {"rnn": (), "gru-simple": ("u", "c~"), "gru": ("u", "r", "c~"), "lstm": ("u", "f", "o", "c~")}


def sigmoid_(z):
    """The logistic σ(z) = 1 / (1 + exp(-z)) in place; returns z.

    Call it inside `np.errstate(over="ignore", under="ignore")` (sequence_forward holds one around its time
    loop, so the per-step calls pay for no errstate): exp(-z) overflows to inf for very negative z, and
    1 / (1 + inf) is the right 0; it underflows to 0 for large z, giving the right 1. The exp form rather than
    (1 + tanh(z / 2)) / 2 because numpy's float32 tanh costs more than its exp.
    """
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    np.divide(1.0, z, out=z)
    return z


def _contiguous_transpose(Wh, ws, tag):
    """Wh^T as a contiguous (G, H) array, made once per chunk for the backward products dz Wh^T: BLAS runs
    them faster with a contiguous operand than with the transposed view Wh.T."""
    WhT = buffer(ws, tag + "WhT", Wh.shape[::-1], Wh.dtype)
    np.copyto(WhT, Wh.T)
    return WhT


def _sigmoid_grad_(d, s, tmp):
    """d *= s * (1 - s) in place (s = σ output, so dz = dσ * σ'(z)); tmp is scratch shaped like s."""
    np.subtract(1.0, s, out=tmp)
    tmp *= s
    d *= tmp


def _tanh_grad_(d, y, tmp):
    """d *= 1 - y**2 in place (y = tanh output, so dz = dy * tanh'(z)); tmp is scratch shaped like y."""
    np.multiply(y, y, out=tmp)
    np.subtract(1.0, tmp, out=tmp)
    d *= tmp


def sequence_forward(cell, xp, state, Wh, *, activation="tanh", ws=None, tag=""):
    """Run one recurrent layer over a chunk.

    Inputs:
    - cell: one of CELLS
    - xp: input projections xp<t> = x<t> Wx + b for every step, of shape (T, B, G)
    - state: initial state, `(a<0>,)` or `(a<0>, c<0>)` for lstm, each of shape (B, H)
    - Wh: recurrent weights, of shape (H, G)
    - activation: "tanh" or "relu" (rnn only)
    - ws: optional workspace dict; tag: prefix that keeps this layer's buffers apart from other layers'

    Returns a tuple of:
    - a_out: outputs a<1..T>, of shape (T, B, H) (a view of a workspace buffer when ws is given)
    - final_state: the state after step T, fresh arrays of shape (B, H)
    - cache: what sequence_backward and step_activations need
    """
    forward = {"rnn": _rnn_forward, "gru-simple": _gru_simple_forward, "gru": _gru_forward,
               "lstm": _lstm_forward}[cell]
    with np.errstate(over="ignore", under="ignore"):  # gates saturate: see sigmoid_
        return forward(xp, state, Wh, activation, ws, tag)


def sequence_backward(da_out, cache):
    """Backpropagate through one layer's chunk (the gradient between time steps is computed inside).

    Inputs:
    - da_out: gradient of the loss with respect to each output a<1..T>, of shape (T, B, H), from the layers
      above only; the final state gets no gradient (truncated BPTT)
    - cache: from sequence_forward

    Returns a tuple of:
    - dxp: gradient of the input projections, of shape (T, B, G)
    - dstate: gradient of the initial state, a tuple like `state`, each of shape (B, H)
    - dWh: gradient of the recurrent weights, of shape (H, G)
    """
    backward = {"rnn": _rnn_backward, "gru-simple": _gru_simple_backward, "gru": _gru_backward,
                "lstm": _lstm_backward}[cache[0]]
    return backward(da_out, cache)


def step_activations(cache):
    """Every per-step activation a cache holds, each of shape (T, B, H): the outputs a<1..T> as "a", lstm's
    memory cells c<1..T> as "c", and the gates after their nonlinearities named as GATE_NAMES (u, r, f, o, c~).

    Views into the cache (copy them before the next call that reuses the workspace). Every cache begins
    (cell, Wh, a_all, gates), with gates None for rnn; the lstm's c_all follows.
    """
    cell, _, a_all, gates = cache[:4]
    acts = {"a": a_all[1:]}
    if cell == "rnn":
        return acts
    H = a_all.shape[2]
    acts.update({name: gates[:, :, k * H:(k + 1) * H] for k, name in enumerate(GATE_NAMES[cell])})
    if cell == "lstm":
        acts["c"] = cache[4][1:]
    return acts


# ---------------------------------------------------------------------------------------------- rnn

def _rnn_forward(xp, state, Wh, activation, ws, tag):
    T, B, H = xp.shape
    a_all = buffer(ws, tag + "a_all", (T + 1, B, H), xp.dtype)  # a<0..T>
    a_all[0] = state[0]
    for t in range(1, T + 1):
        a = a_all[t]
        np.matmul(a_all[t - 1], Wh, out=a)  # z = a<t-1> Wh
        a += xp[t - 1]  # z += xp<t>
        if activation == "relu":
            np.maximum(a, 0.0, out=a)  # a<t> = relu(z)
        else:
            np.tanh(a, out=a)  # a<t> = tanh(z)
    return a_all[1:], (a_all[T].copy(),), ("rnn", Wh, a_all, None, activation, ws, tag)


def _rnn_backward(da_out, cache):
    _, Wh, a_all, _, activation, ws, tag = cache
    T, B, H = da_out.shape
    dz_all = buffer(ws, tag + "dz", (T, B, H), a_all.dtype)  # dz<1..T>, which is dxp (xp enters z as is)
    da = buffer(ws, tag + "da", (B, H), a_all.dtype)
    tmp = buffer(ws, tag + "tmp", (B, H), a_all.dtype)
    WhT = _contiguous_transpose(Wh, ws, tag)
    da_carry = np.zeros((B, H), a_all.dtype)  # the gradient step t+1 sends back to a<t>
    for t in range(T, 0, -1):
        dz = dz_all[t - 1]
        np.add(da_out[t - 1], da_carry, out=da)  # da<t> = da_out<t> + da<t> from step t+1
        if activation == "relu":
            np.greater(a_all[t], 0.0, out=tmp, casting="unsafe")  # relu'(z) = [a<t> > 0]
            np.multiply(da, tmp, out=dz)  # dz = da<t> * [a<t> > 0]
        else:
            np.copyto(dz, da)
            _tanh_grad_(dz, a_all[t], tmp)  # dz = da<t> * (1 - a<t>^2)
        np.matmul(dz, WhT, out=da_carry)  # da<t-1> = dz Wh^T
    dWh = buffer(ws, tag + "dWh", Wh.shape, a_all.dtype)
    np.matmul(a_all[:-1].reshape(T * B, H).T, dz_all.reshape(T * B, H), out=dWh)  # dWh = sum_t a<t-1>^T dz<t>
    return dz_all, (da_carry,), dWh


# --------------------------------------------------------------------------------------- gru-simple

def _gru_simple_forward(xp, state, Wh, activation, ws, tag):
    T, B, G = xp.shape
    H = G // 2
    c_all = buffer(ws, tag + "c_all", (T + 1, B, H), xp.dtype)  # c<0..T> (= a<0..T>)
    gates = buffer(ws, tag + "gates", (T, B, G), xp.dtype)  # [Γu, c~] for steps 1..T
    tmp = buffer(ws, tag + "tmp", (B, H), xp.dtype)
    c_all[0] = state[0]
    for t in range(1, T + 1):
        g, c_prev = gates[t - 1], c_all[t - 1]
        u, c_tilde = g[:, :H], g[:, H:]
        np.matmul(c_prev, Wh, out=g)  # z = c<t-1> Wh
        g += xp[t - 1]  # z += xp<t>
        sigmoid_(u)  # Γu = σ(z_u)
        np.tanh(c_tilde, out=c_tilde)  # c~<t> = tanh(z_c)
        np.subtract(c_tilde, c_prev, out=tmp)  # c~<t> - c<t-1>
        tmp *= u  # Γu * (c~<t> - c<t-1>)
        np.add(c_prev, tmp, out=c_all[t])  # c<t> = c<t-1> + Γu * (c~<t> - c<t-1>)
    return c_all[1:], (c_all[T].copy(),), ("gru-simple", Wh, c_all, gates, ws, tag)


def _gru_simple_backward(dc_out, cache):
    _, Wh, c_all, gates, ws, tag = cache
    T, B, G = gates.shape
    H = G // 2
    dz_all = buffer(ws, tag + "dz", (T, B, G), c_all.dtype)  # [dz_u, dz_c] for steps 1..T (= dxp)
    dc = buffer(ws, tag + "dc", (B, H), c_all.dtype)
    tmp = buffer(ws, tag + "tmp", (B, H), c_all.dtype)
    WhT = _contiguous_transpose(Wh, ws, tag)
    dc_carry = np.zeros((B, H), c_all.dtype)  # the gradient step t+1 sends back to c<t>
    for t in range(T, 0, -1):
        g, dz, c_prev = gates[t - 1], dz_all[t - 1], c_all[t - 1]
        u, c_tilde = g[:, :H], g[:, H:]
        du, dc_tilde = dz[:, :H], dz[:, H:]
        np.add(dc_out[t - 1], dc_carry, out=dc)  # dc<t> = dc_out<t> + dc<t> from step t+1
        np.subtract(c_tilde, c_prev, out=du)  # c~<t> - c<t-1>
        du *= dc  # dΓu = dc<t> * (c~<t> - c<t-1>)
        np.multiply(dc, u, out=dc_tilde)  # dc~ = dc<t> * Γu
        np.subtract(1.0, u, out=tmp)  # 1 - Γu
        np.multiply(dc, tmp, out=dc_carry)  # dc<t-1> = dc<t> * (1 - Γu)
        _sigmoid_grad_(du, u, tmp)  # dz_u = dΓu * Γu * (1 - Γu)
        _tanh_grad_(dc_tilde, c_tilde, tmp)  # dz_c = dc~ * (1 - c~^2)
        np.matmul(dz, WhT, out=tmp)  # dz Wh^T
        dc_carry += tmp  # dc<t-1> += dz Wh^T
    dWh = buffer(ws, tag + "dWh", Wh.shape, c_all.dtype)
    np.matmul(c_all[:-1].reshape(T * B, H).T, dz_all.reshape(T * B, G), out=dWh)  # dWh = sum_t c<t-1>^T dz<t>
    return dz_all, (dc_carry,), dWh


# ---------------------------------------------------------------------------------------------- gru

def _gru_forward(xp, state, Wh, activation, ws, tag):
    T, B, G = xp.shape
    H = G // 3
    W_ur, W_c = Wh[:, :2 * H], Wh[:, 2 * H:]
    c_all = buffer(ws, tag + "c_all", (T + 1, B, H), xp.dtype)  # c<0..T> (= a<0..T>)
    gates = buffer(ws, tag + "gates", (T, B, G), xp.dtype)  # [Γu, Γr, c~] for steps 1..T
    rc_all = buffer(ws, tag + "rc", (T, B, H), xp.dtype)  # Γr * c<t-1>, the candidate's recurrent input
    tmp = buffer(ws, tag + "tmp", (B, H), xp.dtype)
    c_all[0] = state[0]
    for t in range(1, T + 1):
        g, c_prev, rc = gates[t - 1], c_all[t - 1], rc_all[t - 1]
        ur, c_tilde = g[:, :2 * H], g[:, 2 * H:]
        np.matmul(c_prev, W_ur, out=ur)  # z_ur = c<t-1> Wh_ur
        ur += xp[t - 1, :, :2 * H]  # z_ur += xp_ur<t>
        sigmoid_(ur)  # Γu, Γr = σ(z_ur)
        np.multiply(g[:, H:2 * H], c_prev, out=rc)  # Γr * c<t-1>, before the product
        np.matmul(rc, W_c, out=c_tilde)  # z_c = (Γr * c<t-1>) Wh_c
        c_tilde += xp[t - 1, :, 2 * H:]  # z_c += xp_c<t>
        np.tanh(c_tilde, out=c_tilde)  # c~<t> = tanh(z_c)
        np.subtract(c_tilde, c_prev, out=tmp)  # c~<t> - c<t-1>
        tmp *= g[:, :H]  # Γu * (c~<t> - c<t-1>)
        np.add(c_prev, tmp, out=c_all[t])  # c<t> = c<t-1> + Γu * (c~<t> - c<t-1>)
    return c_all[1:], (c_all[T].copy(),), ("gru", Wh, c_all, gates, rc_all, ws, tag)


def _gru_backward(dc_out, cache):
    _, Wh, c_all, gates, rc_all, ws, tag = cache
    T, B, G = gates.shape
    H = G // 3
    dz_all = buffer(ws, tag + "dz", (T, B, G), c_all.dtype)  # [dz_u, dz_r, dz_c] for steps 1..T (= dxp)
    dc = buffer(ws, tag + "dc", (B, H), c_all.dtype)
    drc = buffer(ws, tag + "drc", (B, H), c_all.dtype)
    tmp = buffer(ws, tag + "tmp", (B, H), c_all.dtype)
    tmp2 = buffer(ws, tag + "tmp2", (B, 2 * H), c_all.dtype)
    WhT = _contiguous_transpose(Wh, ws, tag)
    W_urT, W_cT = WhT[:2 * H], WhT[2 * H:]  # row blocks of a contiguous array: contiguous themselves
    dc_carry = np.zeros((B, H), c_all.dtype)  # the gradient step t+1 sends back to c<t>
    for t in range(T, 0, -1):
        g, dz, c_prev = gates[t - 1], dz_all[t - 1], c_all[t - 1]
        u, r, c_tilde = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        du, dr, dc_tilde = dz[:, :H], dz[:, H:2 * H], dz[:, 2 * H:]
        np.add(dc_out[t - 1], dc_carry, out=dc)  # dc<t> = dc_out<t> + dc<t> from step t+1
        np.subtract(c_tilde, c_prev, out=du)  # c~<t> - c<t-1>
        du *= dc  # dΓu = dc<t> * (c~<t> - c<t-1>)
        np.multiply(dc, u, out=dc_tilde)  # dc~ = dc<t> * Γu
        np.subtract(1.0, u, out=tmp)  # 1 - Γu
        np.multiply(dc, tmp, out=dc_carry)  # dc<t-1> = dc<t> * (1 - Γu)
        _tanh_grad_(dc_tilde, c_tilde, tmp)  # dz_c = dc~ * (1 - c~^2)
        np.matmul(dc_tilde, W_cT, out=drc)  # d(Γr * c<t-1>) = dz_c Wh_c^T
        np.multiply(drc, c_prev, out=dr)  # dΓr = d(Γr * c<t-1>) * c<t-1>
        np.multiply(drc, r, out=tmp)  # d(Γr * c<t-1>) * Γr
        dc_carry += tmp  # dc<t-1> += d(Γr * c<t-1>) * Γr
        _sigmoid_grad_(dz[:, :2 * H], g[:, :2 * H], tmp2)  # dz_ur = dΓ * Γ * (1 - Γ) for Γu, Γr
        np.matmul(dz[:, :2 * H], W_urT, out=tmp)  # dz_ur Wh_ur^T
        dc_carry += tmp  # dc<t-1> += dz_ur Wh_ur^T
    dWh = buffer(ws, tag + "dWh", Wh.shape, c_all.dtype)
    flat = dz_all.reshape(T * B, G)
    np.matmul(c_all[:-1].reshape(T * B, H).T, flat[:, :2 * H], out=dWh[:, :2 * H])  # dWh_ur = sum_t c<t-1>^T dz_ur<t>
    np.matmul(rc_all.reshape(T * B, H).T, flat[:, 2 * H:], out=dWh[:, 2 * H:])  # dWh_c = sum_t (Γr*c<t-1>)^T dz_c<t>
    return dz_all, (dc_carry,), dWh


# --------------------------------------------------------------------------------------------- lstm

@functools.cache
def _lstm_kernels(dtype):
    """(forward step, backward step) for `dtype`: the fused float32 kernels of `charlm.engine.fused`
    (imported on first use: numba loads only when a float32 LSTM runs), or the exact numpy steps below.
    Cached: sampling asks once per layer per character."""
    if dtype == np.float32:
        from charlm.engine import fused

        return fused.lstm_forward_step, fused.lstm_backward_step
    return _lstm_forward_step, _lstm_backward_step


def _lstm_forward_step(g, xp, c_prev, c, tanh_c, a):
    """As `charlm.engine.fused.lstm_forward_step`, exactly, in numpy: g (B, G) = a<t-1> Wh -> gates."""
    H = c.shape[1]
    g += xp  # z = a<t-1> Wh + xp<t>
    sigmoid_(g[:, :3 * H])  # Γu, Γf, Γo = σ(z_ufo)
    np.tanh(g[:, 3 * H:], out=g[:, 3 * H:])  # c~<t> = tanh(z_c)
    np.multiply(g[:, :H], g[:, 3 * H:], out=c)  # c<t> = Γu * c~<t>
    np.multiply(g[:, H:2 * H], c_prev, out=tanh_c)  # Γf * c<t-1> (tanh_c as scratch)
    c += tanh_c  # c<t> += Γf * c<t-1>
    np.tanh(c, out=tanh_c)  # tanh(c<t>)
    np.multiply(g[:, 2 * H:3 * H], tanh_c, out=a)  # a<t> = Γo * tanh(c<t>)


def _lstm_backward_step(g, tanh_c, c_prev, da_out, da_next, dc, dz):
    """As `charlm.engine.fused.lstm_backward_step`, exactly, in numpy (da_next is overwritten)."""
    H = dc.shape[1]
    u, f, o, c_tilde = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
    du, df, do, dc_tilde = dz[:, :H], dz[:, H:2 * H], dz[:, 2 * H:3 * H], dz[:, 3 * H:]
    da = da_next
    da += da_out  # da<t> = da_out<t> + da<t> from step t+1
    np.multiply(da, tanh_c, out=do)  # dΓo = da<t> * tanh(c<t>)
    da *= o  # d tanh(c<t>) = da<t> * Γo
    _tanh_grad_(da, tanh_c, du)  # ... * (1 - tanh(c<t>)^2): the gradient a<t> sends to c<t> (du as scratch)
    dc += da  # dc<t> = dc<t> from step t+1 + da<t> * Γo * (1 - tanh(c<t>)^2)
    np.multiply(dc, c_tilde, out=du)  # dΓu = dc<t> * c~<t>
    np.multiply(dc, c_prev, out=df)  # dΓf = dc<t> * c<t-1>
    np.multiply(dc, u, out=dc_tilde)  # dc~ = dc<t> * Γu
    dc *= f  # dc<t-1> = dc<t> * Γf
    for d_gate, gate in ((du, u), (df, f), (do, o)):  # da is scratch from here on
        _sigmoid_grad_(d_gate, gate, da)  # dz = dΓ * Γ * (1 - Γ) for Γu, Γf, Γo
    _tanh_grad_(dc_tilde, c_tilde, da)  # dz_c = dc~ * (1 - c~^2)


def _lstm_forward(xp, state, Wh, activation, ws, tag):
    T, B, G = xp.shape
    H = G // 4
    a_all = buffer(ws, tag + "a_all", (T + 1, B, H), xp.dtype)  # a<0..T>
    c_all = buffer(ws, tag + "c_all", (T + 1, B, H), xp.dtype)  # c<0..T>
    gates = buffer(ws, tag + "gates", (T, B, G), xp.dtype)  # [Γu, Γf, Γo, c~] for steps 1..T
    tanh_c = buffer(ws, tag + "tanh_c", (T, B, H), xp.dtype)  # tanh(c<1..T>)
    forward_step, _ = _lstm_kernels(xp.dtype)
    a_all[0], c_all[0] = state
    for t in range(1, T + 1):
        g = gates[t - 1]
        np.matmul(a_all[t - 1], Wh, out=g)  # a<t-1> Wh
        forward_step(g, xp[t - 1], c_all[t - 1], c_all[t], tanh_c[t - 1], a_all[t])  # z += xp<t>; gates, c<t>, a<t>
    return a_all[1:], (a_all[T].copy(), c_all[T].copy()), ("lstm", Wh, a_all, gates, c_all, tanh_c, ws, tag)


def _lstm_backward(da_out, cache):
    _, Wh, a_all, gates, c_all, tanh_c, ws, tag = cache
    T, B, G = gates.shape
    H = G // 4
    dz_all = buffer(ws, tag + "dz", (T, B, G), a_all.dtype)  # [dz_u, dz_f, dz_o, dz_c] for steps 1..T (= dxp)
    WhT = _contiguous_transpose(Wh, ws, tag)
    _, backward_step = _lstm_kernels(a_all.dtype)
    da_carry = np.zeros((B, H), a_all.dtype)  # the gradient step t+1 sends back to a<t>
    dc = np.zeros((B, H), a_all.dtype)  # dc<t>: from step t+1, then from a<t> added; ends as dc<0>
    for t in range(T, 0, -1):
        dz = dz_all[t - 1]
        backward_step(gates[t - 1], tanh_c[t - 1], c_all[t - 1], da_out[t - 1], da_carry, dc, dz)
        np.matmul(dz, WhT, out=da_carry)  # da<t-1> = dz Wh^T
    dWh = buffer(ws, tag + "dWh", Wh.shape, a_all.dtype)
    np.matmul(a_all[:-1].reshape(T * B, H).T, dz_all.reshape(T * B, G), out=dWh)  # dWh = sum_t a<t-1>^T dz<t>
    return dz_all, (da_carry, dc), dWh
