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

Both cores: the recurrence of each batch row is independent of the others, so with a workspace (and an
OpenBLAS that can pin a thread to one BLAS thread) the time loop runs as two row blocks on two worker
threads, each doing its own single-threaded step products and elementwise work while numpy releases the
GIL. The worker pool lives in the workspace. The large products over all time steps stay on the calling
thread with every BLAS thread. Row blocks do the same arithmetic per row, so results do not depend on it.
"""

import ctypes
import glob
import os
from concurrent.futures import ThreadPoolExecutor

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


def _blas_thread_pinner():
    """OpenBLAS's per-thread thread-count setter (OpenBLAS >= 0.3.27), or None if there is none."""
    paths = []
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    paths = paths or glob.glob(os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs",
                                            "*openblas*"))
    for path in paths:
        try:
            setter = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        return setter
    return None


def _worker_pool(ws):
    """Two worker threads whose BLAS calls are single-threaded, kept in the workspace; None if unavailable."""
    if ws is None:
        return None
    if "pool" not in ws:
        pinner = _blas_thread_pinner() if (os.cpu_count() or 1) >= 2 else None
        ws["pool"] = None if pinner is None else ThreadPoolExecutor(2, initializer=pinner, initargs=(1,))
    return ws["pool"]


def _in_row_blocks(loop, B, ws):
    """Run loop(rows) over the whole batch: two row blocks on the worker pool, or all rows here."""
    pool = _worker_pool(ws) if B >= 16 else None
    if pool is None:
        loop(slice(0, B))
        return
    half = B // 2
    for future in [pool.submit(loop, slice(0, half)), pool.submit(loop, slice(half, B))]:
        future.result()


def sigmoid_(z):
    """Stable logistic in place: sigma(z) = (1 + tanh(z / 2)) / 2 never overflows. Returns z."""
    np.multiply(z, 0.5, out=z)
    np.tanh(z, out=z)
    np.multiply(z, 0.5, out=z)
    np.add(z, 0.5, out=z)
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

    def loop(rows):
        for t in range(T):
            a = hs[t + 1, rows]
            np.matmul(hs[t, rows], Wh, out=a)
            a += xp[t, rows]
            if activation == "relu":
                np.maximum(a, 0.0, out=a)
            else:
                np.tanh(a, out=a)

    _in_row_blocks(loop, B, ws)
    return hs[1:], (hs[T].copy(),), ("rnn", Wh, hs, activation, ws, tag)


def _rnn_backward(dhs, cache):
    _, Wh, hs, activation, ws, tag = cache
    T1, B, H = hs.shape
    T = T1 - 1
    dpre = buffer(ws, tag + "dpre", (T, B, H), hs.dtype)
    da_next = np.zeros((B, H), hs.dtype)

    def loop(rows):
        n = rows.stop - rows.start
        da = buffer(ws, f"{tag}da{rows.start}", (n, H), hs.dtype)
        tmp = buffer(ws, f"{tag}tmp{rows.start}", (n, H), hs.dtype)
        for t in range(T - 1, -1, -1):
            np.add(dhs[t, rows], da_next[rows], out=da)
            dp = dpre[t, rows]
            if activation == "relu":
                np.greater(hs[t + 1, rows], 0.0, out=tmp, casting="unsafe")
                np.multiply(da, tmp, out=dp)
            else:
                np.copyto(dp, da)
                _tanh_grad_(dp, hs[t + 1, rows], tmp)
            np.matmul(dp, Wh.T, out=da_next[rows])

    _in_row_blocks(loop, B, ws)
    dWh = buffer(ws, tag + "dWh", Wh.shape, hs.dtype)
    np.matmul(hs[:-1].reshape(T * B, H).T, dpre.reshape(T * B, H), out=dWh)
    return dpre, (da_next,), dWh


# --------------------------------------------------------------------------------------- gru-simple

def _gru_simple_forward(xp, state, Wh, activation, ws, tag):
    T, B, G = xp.shape
    H = G // 2
    hs = buffer(ws, tag + "hs", (T + 1, B, H), xp.dtype)  # c<0..T>
    gates = buffer(ws, tag + "gates", (T, B, G), xp.dtype)  # [u, c~] after their nonlinearities
    hs[0] = state[0]

    def loop(rows):
        tmp = buffer(ws, f"{tag}tmp{rows.start}", (rows.stop - rows.start, H), xp.dtype)
        for t in range(T):
            g, c_prev = gates[t, rows], hs[t, rows]
            np.matmul(c_prev, Wh, out=g)
            g += xp[t, rows]
            u, cc = g[:, :H], g[:, H:]
            sigmoid_(u)
            np.tanh(cc, out=cc)
            np.subtract(cc, c_prev, out=tmp)
            tmp *= u
            np.add(c_prev, tmp, out=hs[t + 1, rows])

    _in_row_blocks(loop, B, ws)
    return hs[1:], (hs[T].copy(),), ("gru-simple", Wh, hs, gates, ws, tag)


def _gru_simple_backward(dhs, cache):
    _, Wh, hs, gates, ws, tag = cache
    T, B, G = gates.shape
    H = G // 2
    dpre = buffer(ws, tag + "dpre", (T, B, G), hs.dtype)
    dc_next = np.zeros((B, H), hs.dtype)

    def loop(rows):
        n = rows.stop - rows.start
        dc = buffer(ws, f"{tag}dc{rows.start}", (n, H), hs.dtype)
        tmp = buffer(ws, f"{tag}tmp{rows.start}", (n, H), hs.dtype)
        dcn = dc_next[rows]
        for t in range(T - 1, -1, -1):
            g, dp = gates[t, rows], dpre[t, rows]
            u, cc = g[:, :H], g[:, H:]
            du, dcc = dp[:, :H], dp[:, H:]
            np.add(dhs[t, rows], dcn, out=dc)
            np.subtract(cc, hs[t, rows], out=du)
            du *= dc
            np.multiply(dc, u, out=dcc)
            np.subtract(1.0, u, out=tmp)
            np.multiply(dc, tmp, out=dcn)
            _sigmoid_grad_(du, u, tmp)
            _tanh_grad_(dcc, cc, tmp)
            np.matmul(dp, Wh.T, out=tmp)
            dcn += tmp

    _in_row_blocks(loop, B, ws)
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
    hs[0] = state[0]

    def loop(rows):
        tmp = buffer(ws, f"{tag}tmp{rows.start}", (rows.stop - rows.start, H), xp.dtype)
        for t in range(T):
            g, c_prev, rc = gates[t, rows], hs[t, rows], rcs[t, rows]
            ur, cc = g[:, :2 * H], g[:, 2 * H:]
            np.matmul(c_prev, W_ur, out=ur)
            ur += xp[t, rows, :2 * H]
            sigmoid_(ur)
            np.multiply(g[:, H:2 * H], c_prev, out=rc)
            np.matmul(rc, W_c, out=cc)
            cc += xp[t, rows, 2 * H:]
            np.tanh(cc, out=cc)
            np.subtract(cc, c_prev, out=tmp)
            tmp *= g[:, :H]
            np.add(c_prev, tmp, out=hs[t + 1, rows])

    _in_row_blocks(loop, B, ws)
    return hs[1:], (hs[T].copy(),), ("gru", Wh, hs, gates, rcs, ws, tag)


def _gru_backward(dhs, cache):
    _, Wh, hs, gates, rcs, ws, tag = cache
    T, B, G = gates.shape
    H = G // 3
    W_ur, W_c = Wh[:, :2 * H], Wh[:, 2 * H:]
    dpre = buffer(ws, tag + "dpre", (T, B, G), hs.dtype)
    dc_next = np.zeros((B, H), hs.dtype)

    def loop(rows):
        n = rows.stop - rows.start
        dc = buffer(ws, f"{tag}dc{rows.start}", (n, H), hs.dtype)
        drc = buffer(ws, f"{tag}drc{rows.start}", (n, H), hs.dtype)
        tmp = buffer(ws, f"{tag}tmp{rows.start}", (n, H), hs.dtype)
        tmp2 = buffer(ws, f"{tag}tmp2{rows.start}", (n, 2 * H), hs.dtype)
        dcn = dc_next[rows]
        for t in range(T - 1, -1, -1):
            g, dp, c_prev = gates[t, rows], dpre[t, rows], hs[t, rows]
            u, r, cc = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
            du, dr, dcc = dp[:, :H], dp[:, H:2 * H], dp[:, 2 * H:]
            np.add(dhs[t, rows], dcn, out=dc)
            np.subtract(cc, c_prev, out=du)
            du *= dc
            np.multiply(dc, u, out=dcc)
            np.subtract(1.0, u, out=tmp)
            np.multiply(dc, tmp, out=dcn)
            _tanh_grad_(dcc, cc, tmp)
            np.matmul(dcc, W_c.T, out=drc)  # gradient of r * c<t-1>
            np.multiply(drc, c_prev, out=dr)
            np.multiply(drc, r, out=tmp)
            dcn += tmp
            _sigmoid_grad_(dp[:, :2 * H], g[:, :2 * H], tmp2)
            np.matmul(dp[:, :2 * H], W_ur.T, out=tmp)
            dcn += tmp

    _in_row_blocks(loop, B, ws)
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
    hs[0], cs[0] = state

    def loop(rows):
        tmp = buffer(ws, f"{tag}tmp{rows.start}", (rows.stop - rows.start, H), xp.dtype)
        for t in range(T):
            g, c, tc = gates[t, rows], cs[t + 1, rows], tcs[t, rows]
            np.matmul(hs[t, rows], Wh, out=g)
            g += xp[t, rows]
            sigmoid_(g[:, :3 * H])
            np.tanh(g[:, 3 * H:], out=g[:, 3 * H:])
            np.multiply(g[:, :H], g[:, 3 * H:], out=c)
            np.multiply(g[:, H:2 * H], cs[t, rows], out=tmp)
            c += tmp
            np.tanh(c, out=tc)
            np.multiply(g[:, 2 * H:3 * H], tc, out=hs[t + 1, rows])

    _in_row_blocks(loop, B, ws)
    return hs[1:], (hs[T].copy(), cs[T].copy()), ("lstm", Wh, hs, cs, gates, tcs, ws, tag)


def _lstm_backward(dhs, cache):
    _, Wh, hs, cs, gates, tcs, ws, tag = cache
    T, B, G = gates.shape
    H = G // 4
    dpre = buffer(ws, tag + "dpre", (T, B, G), hs.dtype)
    dh_next = np.zeros((B, H), hs.dtype)
    dc_next = np.zeros((B, H), hs.dtype)  # gradient of c<t>, carried backwards

    def loop(rows):
        n = rows.stop - rows.start
        dh = buffer(ws, f"{tag}dh{rows.start}", (n, H), hs.dtype)
        tmp = buffer(ws, f"{tag}tmp{rows.start}", (n, H), hs.dtype)
        tmp3 = buffer(ws, f"{tag}tmp3{rows.start}", (n, 3 * H), hs.dtype)
        dc = dc_next[rows]
        for t in range(T - 1, -1, -1):
            g, dp, tc = gates[t, rows], dpre[t, rows], tcs[t, rows]
            u, f, o, cc = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
            du, df, do, dcc = dp[:, :H], dp[:, H:2 * H], dp[:, 2 * H:3 * H], dp[:, 3 * H:]
            np.add(dhs[t, rows], dh_next[rows], out=dh)
            np.multiply(dh, tc, out=do)
            dh *= o  # now the gradient of tanh(c<t>)
            _tanh_grad_(dh, tc, tmp)
            dc += dh
            np.multiply(dc, cc, out=du)
            np.multiply(dc, cs[t, rows], out=df)
            np.multiply(dc, u, out=dcc)
            dc *= f
            _sigmoid_grad_(dp[:, :3 * H], g[:, :3 * H], tmp3)
            _tanh_grad_(dcc, cc, tmp)
            np.matmul(dp, Wh.T, out=dh_next[rows])

    _in_row_blocks(loop, B, ws)
    dWh = buffer(ws, tag + "dWh", Wh.shape, hs.dtype)
    np.matmul(hs[:-1].reshape(T * B, H).T, dpre.reshape(T * B, G), out=dWh)
    return dpre, (dh_next, dc_next), dWh
