"""Recurrent cells as sequence-level forward/backward pairs, with the time loop inside.

Letters: T time, B batch, H hidden, G = gates * H (the stacked pre-activation width).

Each layer's weights are stacked over its gates, so one step costs one matrix product for all gates
(two for the full GRU, whose reset gate multiplies c<t-1> before the candidate's product). The caller
computes every time step's input projection `xp = x @ Wx + b` in one product before the loop and turns
the returned `dxp` into `dWx`, `db` and `dx` after it; `dWh` is one product over all time steps.

Column order of the stacked gates (sigmoid gates first, the tanh candidate last):
- rnn:        [a]             a<t> = g(a<t-1> Wh + xp<t>), g = tanh or relu
- gru-simple: [u, c~]         c<t> = c<t-1> + u * (c~ - c<t-1>)
- gru:        [u, r, c~]      c~ = tanh((r * c<t-1>) Wh_c + xp_c)
- lstm:       [u, f, o, c~]   c<t> = u * c~ + f * c<t-1>,  a<t> = o * tanh(c<t>)

`sequence_forward(cell, xp, state, Wh)` returns `(hs, final_state, cache)`;
`sequence_backward(dhs, cache)` returns `(dxp, dstate0, dWh)`. Nothing is kept between calls except in the
optional workspace, a dict of reusable buffers that the caller owns.
"""

import numpy as np

CELLS = ("rnn", "gru", "gru-simple", "lstm")
GATES = {"rnn": 1, "gru-simple": 2, "gru": 3, "lstm": 4}
STATE_ARRAYS = {"rnn": 1, "gru-simple": 1, "gru": 1, "lstm": 2}


def buffer(ws, key, shape, dtype):
    """An uninitialised array: fresh without a workspace, else reused from `ws[key, shape, dtype]`."""
    if ws is None:
        return np.empty(shape, dtype)
    full_key = (key, tuple(shape), np.dtype(dtype).str)
    arr = ws.get(full_key)
    if arr is None:
        arr = ws[full_key] = np.empty(shape, dtype)
    return arr


def sigmoid_(z):
    """Logistic in place: 1 / (1 + exp(-z)). Returns z.

    exp(-z) overflows to inf for z < -88 (float32), and 1 / inf is exactly the right 0; it underflows to 0
    for large z, giving 1: both are expected, not errors. Faster than the tanh form (1 + tanh(z / 2)) / 2:
    numpy's float32 tanh costs about 1.5x its exp on this machine (LSTM 256x2 step: 16 -> 12.6 ms of sigmoid).
    """
    with np.errstate(over="ignore", under="ignore"):
        return _logistic_(z)


def _logistic_(z):
    """sigmoid_ without its np.errstate: for the time loops, which sequence_forward runs inside one (entering
    an errstate costs ~4 us, a third of a one-stream step's elementwise work)."""
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    np.divide(1.0, z, out=z)
    return z


def _sigmoid_grad_(d, s, tmp):
    """d *= s * (1 - s) in place (s = sigmoid output); tmp is scratch shaped like s."""
    np.subtract(1.0, s, out=tmp)
    tmp *= s
    d *= tmp


def _tanh_grad_(d, y, tmp):
    """d *= 1 - y**2 in place (y = tanh output); tmp is scratch shaped like y."""
    np.multiply(y, y, out=tmp)
    np.subtract(1.0, tmp, out=tmp)
    d *= tmp


def sequence_forward(cell, xp, state, Wh, *, activation="tanh", ws=None, tag=""):
    """Run one recurrent layer over a chunk.

    Inputs:
    - cell: one of CELLS
    - xp: input projections x<t> Wx + b for every step, of shape (T, B, G)
    - state: initial state, `(a0,)` or `(a0, c0)` for lstm, each of shape (B, H)
    - Wh: recurrent weights, of shape (H, G)
    - activation: "tanh" or "relu" (rnn only)
    - ws: optional workspace dict; tag: prefix that keeps this layer's buffers apart from other layers'

    Returns a tuple of:
    - hs: hidden outputs a<1..T>, of shape (T, B, H) (a workspace view when ws is given)
    - final_state: the state after step T, plain arrays of shape (B, H)
    - cache: what sequence_backward needs
    """
    forward = {"rnn": _rnn_forward, "gru-simple": _gru_simple_forward, "gru": _gru_forward,
               "lstm": _lstm_forward}[cell]
    with np.errstate(over="ignore", under="ignore"):  # the gates' exp(-z) may overflow: see sigmoid_
        return forward(xp, state, Wh, activation, ws, tag)


def sequence_backward(dhs, cache):
    """Backpropagate through one layer's chunk (the gradient between time steps is computed inside).

    Inputs:
    - dhs: gradient of the loss with respect to each step's output hs, of shape (T, B, H); the final
      state gets no gradient (truncated BPTT)
    - cache: from sequence_forward

    Returns a tuple of:
    - dxp: gradient of the input projections, of shape (T, B, G)
    - dstate: gradient of the initial state, a tuple like `state`, each of shape (B, H)
    - dWh: gradient of the recurrent weights, of shape (H, G)
    """
    backward = {"rnn": _rnn_backward, "gru-simple": _gru_simple_backward, "gru": _gru_backward,
                "lstm": _lstm_backward}[cache[0]]
    return backward(dhs, cache)


# ---------------------------------------------------------------------------------------------- rnn

def _rnn_forward(xp, state, Wh, activation, ws, tag):
    T, B, H = xp.shape
    hs = buffer(ws, tag + "hs", (T + 1, B, H), xp.dtype)  # a<0..T>
    hs[0] = state[0]
    for t in range(T):
        a = hs[t + 1]
        np.matmul(hs[t], Wh, out=a)
        a += xp[t]
        if activation == "relu":
            np.maximum(a, 0.0, out=a)
        else:
            np.tanh(a, out=a)
    return hs[1:], (hs[T].copy(),), ("rnn", Wh, hs, activation, ws, tag)


def _rnn_backward(dhs, cache):
    _, Wh, hs, activation, ws, tag = cache
    T1, B, H = hs.shape
    T = T1 - 1
    dpre = buffer(ws, tag + "dpre", (T, B, H), hs.dtype)
    da = buffer(ws, tag + "da", (B, H), hs.dtype)
    tmp = buffer(ws, tag + "tmp", (B, H), hs.dtype)
    da_next = np.zeros((B, H), hs.dtype)
    for t in range(T - 1, -1, -1):
        np.add(dhs[t], da_next, out=da)
        dp = dpre[t]
        if activation == "relu":
            np.greater(hs[t + 1], 0.0, out=tmp, casting="unsafe")
            np.multiply(da, tmp, out=dp)
        else:
            np.copyto(dp, da)
            _tanh_grad_(dp, hs[t + 1], tmp)
        np.matmul(dp, Wh.T, out=da_next)
    dWh = buffer(ws, tag + "dWh", Wh.shape, hs.dtype)
    np.matmul(hs[:-1].reshape(T * B, H).T, dpre.reshape(T * B, H), out=dWh)
    return dpre, (da_next,), dWh


# --------------------------------------------------------------------------------------- gru-simple

def _gru_simple_forward(xp, state, Wh, activation, ws, tag):
    T, B, G = xp.shape
    H = G // 2
    hs = buffer(ws, tag + "hs", (T + 1, B, H), xp.dtype)  # c<0..T>
    gates = buffer(ws, tag + "gates", (T, B, G), xp.dtype)  # [u, c~] after their nonlinearities
    tmp = buffer(ws, tag + "tmp", (B, H), xp.dtype)
    hs[0] = state[0]
    for t in range(T):
        g = gates[t]
        np.matmul(hs[t], Wh, out=g)
        g += xp[t]
        u, cc = g[:, :H], g[:, H:]
        _logistic_(u)
        np.tanh(cc, out=cc)
        np.subtract(cc, hs[t], out=tmp)
        tmp *= u
        np.add(hs[t], tmp, out=hs[t + 1])
    return hs[1:], (hs[T].copy(),), ("gru-simple", Wh, hs, gates, ws, tag)


def _gru_simple_backward(dhs, cache):
    _, Wh, hs, gates, ws, tag = cache
    T, B, G = gates.shape
    H = G // 2
    dpre = buffer(ws, tag + "dpre", (T, B, G), hs.dtype)
    dc = buffer(ws, tag + "dc", (B, H), hs.dtype)
    tmp = buffer(ws, tag + "tmp", (B, H), hs.dtype)
    dc_next = np.zeros((B, H), hs.dtype)
    for t in range(T - 1, -1, -1):
        g, dp = gates[t], dpre[t]
        u, cc = g[:, :H], g[:, H:]
        du, dcc = dp[:, :H], dp[:, H:]
        np.add(dhs[t], dc_next, out=dc)
        np.subtract(cc, hs[t], out=du)
        du *= dc
        np.multiply(dc, u, out=dcc)
        np.subtract(1.0, u, out=tmp)
        np.multiply(dc, tmp, out=dc_next)
        _sigmoid_grad_(du, u, tmp)
        _tanh_grad_(dcc, cc, tmp)
        np.matmul(dp, Wh.T, out=tmp)
        dc_next += tmp
    dWh = buffer(ws, tag + "dWh", Wh.shape, hs.dtype)
    np.matmul(hs[:-1].reshape(T * B, H).T, dpre.reshape(T * B, G), out=dWh)
    return dpre, (dc_next,), dWh


# ---------------------------------------------------------------------------------------------- gru

def _gru_forward(xp, state, Wh, activation, ws, tag):
    T, B, G = xp.shape
    H = G // 3
    W_ur, W_c = Wh[:, :2 * H], Wh[:, 2 * H:]
    hs = buffer(ws, tag + "hs", (T + 1, B, H), xp.dtype)  # c<0..T>
    gates = buffer(ws, tag + "gates", (T, B, G), xp.dtype)  # [u, r, c~] after their nonlinearities
    rcs = buffer(ws, tag + "rcs", (T, B, H), xp.dtype)  # r * c<t-1>, the candidate's recurrent input
    tmp = buffer(ws, tag + "tmp", (B, H), xp.dtype)
    hs[0] = state[0]
    for t in range(T):
        g = gates[t]
        ur, cc = g[:, :2 * H], g[:, 2 * H:]
        np.matmul(hs[t], W_ur, out=ur)
        ur += xp[t, :, :2 * H]
        _logistic_(ur)
        np.multiply(g[:, H:2 * H], hs[t], out=rcs[t])
        np.matmul(rcs[t], W_c, out=cc)
        cc += xp[t, :, 2 * H:]
        np.tanh(cc, out=cc)
        np.subtract(cc, hs[t], out=tmp)
        tmp *= g[:, :H]
        np.add(hs[t], tmp, out=hs[t + 1])
    return hs[1:], (hs[T].copy(),), ("gru", Wh, hs, gates, rcs, ws, tag)


def _gru_backward(dhs, cache):
    _, Wh, hs, gates, rcs, ws, tag = cache
    T, B, G = gates.shape
    H = G // 3
    W_ur, W_c = Wh[:, :2 * H], Wh[:, 2 * H:]
    dpre = buffer(ws, tag + "dpre", (T, B, G), hs.dtype)
    dc = buffer(ws, tag + "dc", (B, H), hs.dtype)
    drc = buffer(ws, tag + "drc", (B, H), hs.dtype)
    tmp = buffer(ws, tag + "tmp", (B, H), hs.dtype)
    tmp2 = buffer(ws, tag + "tmp2", (B, 2 * H), hs.dtype)
    dc_next = np.zeros((B, H), hs.dtype)
    for t in range(T - 1, -1, -1):
        g, dp = gates[t], dpre[t]
        u, r, cc = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        du, dr, dcc = dp[:, :H], dp[:, H:2 * H], dp[:, 2 * H:]
        np.add(dhs[t], dc_next, out=dc)
        np.subtract(cc, hs[t], out=du)
        du *= dc
        np.multiply(dc, u, out=dcc)
        np.subtract(1.0, u, out=tmp)
        np.multiply(dc, tmp, out=dc_next)
        _tanh_grad_(dcc, cc, tmp)
        np.matmul(dcc, W_c.T, out=drc)  # gradient of r * c<t-1>
        np.multiply(drc, hs[t], out=dr)
        np.multiply(drc, r, out=tmp)
        dc_next += tmp
        _sigmoid_grad_(dp[:, :2 * H], g[:, :2 * H], tmp2)
        np.matmul(dp[:, :2 * H], W_ur.T, out=tmp)
        dc_next += tmp
    dWh = buffer(ws, tag + "dWh", Wh.shape, hs.dtype)
    flat = dpre.reshape(T * B, G)
    np.matmul(hs[:-1].reshape(T * B, H).T, flat[:, :2 * H], out=dWh[:, :2 * H])
    np.matmul(rcs.reshape(T * B, H).T, flat[:, 2 * H:], out=dWh[:, 2 * H:])
    return dpre, (dc_next,), dWh


# --------------------------------------------------------------------------------------------- lstm

def _lstm_forward(xp, state, Wh, activation, ws, tag):
    T, B, G = xp.shape
    H = G // 4
    hs = buffer(ws, tag + "hs", (T + 1, B, H), xp.dtype)  # a<0..T>
    cs = buffer(ws, tag + "cs", (T + 1, B, H), xp.dtype)  # c<0..T>
    gates = buffer(ws, tag + "gates", (T, B, G), xp.dtype)  # [u, f, o, c~] after their nonlinearities
    tcs = buffer(ws, tag + "tcs", (T, B, H), xp.dtype)  # tanh(c<t>)
    tmp = buffer(ws, tag + "tmp", (B, H), xp.dtype)
    hs[0], cs[0] = state
    for t in range(T):
        g = gates[t]
        np.matmul(hs[t], Wh, out=g)
        g += xp[t]
        _logistic_(g[:, :3 * H])
        np.tanh(g[:, 3 * H:], out=g[:, 3 * H:])
        np.multiply(g[:, :H], g[:, 3 * H:], out=cs[t + 1])
        np.multiply(g[:, H:2 * H], cs[t], out=tmp)
        cs[t + 1] += tmp
        np.tanh(cs[t + 1], out=tcs[t])
        np.multiply(g[:, 2 * H:3 * H], tcs[t], out=hs[t + 1])
    return hs[1:], (hs[T].copy(), cs[T].copy()), ("lstm", Wh, hs, cs, gates, tcs, ws, tag)


def _lstm_backward(dhs, cache):
    _, Wh, hs, cs, gates, tcs, ws, tag = cache
    T, B, G = gates.shape
    H = G // 4
    dpre = buffer(ws, tag + "dpre", (T, B, G), hs.dtype)
    dh = buffer(ws, tag + "dh", (B, H), hs.dtype)
    tmp = buffer(ws, tag + "tmp", (B, H), hs.dtype)
    tmp3 = buffer(ws, tag + "tmp3", (B, 3 * H), hs.dtype)
    dh_next = np.zeros((B, H), hs.dtype)
    dc = np.zeros((B, H), hs.dtype)  # gradient of c<t>, carried backwards
    for t in range(T - 1, -1, -1):
        g, dp = gates[t], dpre[t]
        u, f, o, cc = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        du, df, do, dcc = dp[:, :H], dp[:, H:2 * H], dp[:, 2 * H:3 * H], dp[:, 3 * H:]
        np.add(dhs[t], dh_next, out=dh)
        np.multiply(dh, tcs[t], out=do)
        dh *= o  # now the gradient of tanh(c<t>)
        _tanh_grad_(dh, tcs[t], tmp)
        dc += dh
        np.multiply(dc, cc, out=du)
        np.multiply(dc, cs[t], out=df)
        np.multiply(dc, u, out=dcc)
        dc *= f
        _sigmoid_grad_(dp[:, :3 * H], g[:, :3 * H], tmp3)
        _tanh_grad_(dcc, cc, tmp)
        np.matmul(dp, Wh.T, out=dh_next)
    dWh = buffer(ws, tag + "dWh", Wh.shape, hs.dtype)
    np.matmul(hs[:-1].reshape(T * B, H).T, dpre.reshape(T * B, G), out=dWh)
    return dpre, (dh_next, dc), dWh
