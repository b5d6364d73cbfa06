"""charlm's stacked gates in the row order of another library's recurrent layer: what the ONNX graph
(`charlm.export.onnx_graph`) and the PyTorch state dict (`charlm.export.torch_state`) share.

Letters: D a layer's input width, H hidden, G = gates * H.

charlm keeps one direction of one layer as Wx (D, G), Wh (H, G) and b (G,), gate blocks in the column order
of `charlm.engine.cells` (lstm [u, f, o, c~], gru [u, r, c~], gru-simple [u, c~], rnn [a]). ONNX and PyTorch
keep W (G', D), R (G', H) and two biases (G',) each, gate blocks in rows, in their own orders:

- ONNX LSTM [i, o, f, c] = [Γu, Γo, Γf, c~]; PyTorch LSTM [i, f, g, o] = [Γu, Γf, c~, Γo]. The equations are
  the lecture's (a<t> = Γo * tanh(c<t>)), so only the order changes.
- GRU: both write h<t> = (1 - z) * n + z * h<t-1>, where charlm writes c<t> = Γu * c~ + (1 - Γu) * c<t-1>, so
  z = 1 - Γu = σ(-(pre-activation of Γu)): z's weights and bias are u's NEGATED. ONNX [z, r, h] with
  linear_before_reset=0 applies r to h<t-1> before the candidate's product, (r * h<t-1>) R_h, which is the
  lecture's GRU. PyTorch [r, z, n] applies it after, r * (h<t-1> W_hn + b_hn): no weights turn one into the
  other, so the lecture's GRU has no PyTorch form (`TORCH_REFUSES`).
- gru-simple (no reset gate) is a GRU whose reset gate is pinned open: its r rows of W and R are zero and its
  bias is PINNED_OPEN, so r = σ(PINNED_OPEN) = 1.0 exactly in float32, and then (r * h) R_h = h R_h and
  r * (h W_hn + b_hn) = h W_hn + b_hn (b_hn = 0) exactly: both libraries' GRUs compute charlm's c~.
- rnn is one block [a], the same in all three.

charlm's b goes to the input bias; the recurrent bias is zero (the two add up, so any split is the same model).
Every array comes out float32, whatever the checkpoint's dtype.
"""

import numpy as np

# σ(40) = 1 / (1 + e^-40) rounds to exactly 1.0 in float32: e^-40 (4e-18) is far below half an ulp of 1
# (2^-24, 6e-8). e^40 (2e17) is still finite in float32, so a runtime that computes e^x / (1 + e^x) gets 1.0 too.
PINNED_OPEN = 40.0

# Where each of the target's gate blocks comes from: (charlm's block index, sign), or None for a reset gate
# pinned open. Keyed by (library, cell).
BLOCKS = {
    ("onnx", "rnn"): [(0, 1.0)],
    ("onnx", "gru-simple"): [(0, -1.0), None, (1, 1.0)],
    ("onnx", "gru"): [(0, -1.0), (1, 1.0), (2, 1.0)],
    ("onnx", "lstm"): [(0, 1.0), (2, 1.0), (1, 1.0), (3, 1.0)],
    ("torch", "rnn"): [(0, 1.0)],
    ("torch", "gru-simple"): [None, (0, -1.0), (1, 1.0)],
    ("torch", "lstm"): [(0, 1.0), (1, 1.0), (3, 1.0), (2, 1.0)],
}
TORCH_REFUSES = {"gru": "the lecture's GRU (--cell gru) applies its reset gate to c<t-1> before the recurrent "
                        "product, (Γr * c<t-1>) Wh, and nn.GRU applies it after, r * (h W_hn + b_hn): no weights "
                        "turn one into the other (export it with --format onnx, whose GRU has that form)"}


def gate_rows(library: str, cell: str, Wx, Wh, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction of one layer in the target's layout.

    Inputs: library "onnx" or "torch"; cell as `charlm.engine.cells.CELLS`; Wx (D, G), Wh (H, G), b (G,).
    Returns float32 (W (G', D), R (G', H), bias (G',)), G' = the target's gates * H: the input weights, the
    recurrent weights and the input bias, gate blocks in the target's order.
    """
    H = Wh.shape[0]
    W, R, bias = [], [], []
    for source in BLOCKS[(library, cell)]:
        if source is None:
            W.append(np.zeros((H, Wx.shape[0])))
            R.append(np.zeros((H, H)))
            bias.append(np.full(H, PINNED_OPEN))
            continue
        k, sign = source
        block = slice(k * H, (k + 1) * H)
        W.append(sign * Wx[:, block].T)
        R.append(sign * Wh[:, block].T)
        bias.append(sign * b[block])
    return tuple(np.ascontiguousarray(np.concatenate(parts), dtype=np.float32) for parts in (W, R, bias))
