"""Forward-only recurrent layers: what inference runs when no backward follows.

Letters: T time, B batch, H hidden, G = gates * H, R rows of an input-projection table.

Training's `charlm.engine.cells.sequence_forward` keeps every step's gates (and an LSTM's tanh(c<t>)) for its
backward: (T, B, G) written and never read again when nothing trains. A float32 LSTM here keeps one step's
product (B, G) and the current c<t>, and reads each step's input projection through row numbers
(`charlm.engine.fused.lstm_infer_step`): a one-hot layer reads its (V, G) table Wx + b at the step's ids (the
(T, B, G) gather of training never happens), a reverse direction reads its projections in reverse without
copying them. Other cells and float64 (the checks) run training's forward and drop its cache.
"""

from charlm.engine import cells
from charlm.engine.backend import buffer, np

__all__ = ["infer_sequence", "lean"]


def lean(cell: str, dtype) -> bool:
    """Whether `cell` in `dtype` has the forward-only kernel (`infer_sequence` reads projections by rows)."""
    return cell == "lstm" and np.dtype(dtype) == np.float32


def infer_sequence(cell, xp, rows, state, Wh, *, activation="tanh", ws=None, tag=""):
    """Run one recurrent layer over a chunk, forward only.

    Inputs: as `charlm.engine.cells.sequence_forward`, but the projections are a table read by row number:
    - xp: input projections, of shape (R, G); step t of stream b reads row rows[t, b]
    - rows: of shape (T, B), integers in [0, R)

    Returns (a_out (T, B, H), final_state): as `sequence_forward` without its cache.
    """
    if not lean(cell, xp.dtype):
        a_out, final, _ = cells.sequence_forward(cell, xp[rows], state, Wh, activation=activation, ws=ws, tag=tag)
        return a_out, final
    from charlm.engine import fused  # numba loads only when a float32 LSTM runs

    T, B = rows.shape
    H = Wh.shape[0]
    a_all = buffer(ws, tag + "a_all", (T + 1, B, H), xp.dtype)  # a<0..T>
    g = buffer(ws, tag + "g", (B, 4 * H), xp.dtype)  # a<t-1> Wh, one step's
    c = np.array(state[1], dtype=xp.dtype)  # c<t>, overwritten step by step
    a_all[0] = state[0]
    for t in range(1, T + 1):
        np.matmul(a_all[t - 1], Wh, out=g)  # a<t-1> Wh
        fused.lstm_infer_step(g, xp, rows[t - 1], c, a_all[t])  # z = a<t-1> Wh + xp<t>; c<t>, a<t>
    return a_all[1:], (a_all[T].copy(), c)
