"""Plain float64 references for the engine tests, written from the equations, not from charlm's code.

- naive_forward: the lecture's cells one step and one gate at a time, on charlm's stacked weights.
- naive_model_nll: one-hot inputs, naive_forward per layer, a per-row log-softmax (tied head too).
- torch_lstm / torch_gru / torch_rnn: PyTorch's nn.LSTM / nn.GRU / nn.RNN equations (gate orders i, f, g, o
  and r, z, n, per-gate weight matrices, two biases), written independently of charlm's cells; to_torch_lstm /
  to_torch_gru map charlm's stacked weights to them, written from the equations (the export's own mapping,
  `charlm.export.gates`, is checked through torch_* in tests/test_export_torch.py).
- log_softmax: over the last axis, shifted by the row maximum.
"""

import zlib

import numpy as np


def seed_of(*parts):
    """A seed that is the same in every process (str hashing is randomised)."""
    return zlib.crc32(repr(parts).encode())


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def naive_forward(cell, xp, state, Wh, activation):
    """The lecture's equations, one step and one gate at a time (xp[t] = x<t> Wx + b, gates stacked).

    Returns (outputs a<1..T> of shape (T, B, H), final state tuple).
    """
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


def naive_model_nll(params, cfg, x, y, state):
    """Per-target nll (T, B) of the language model: one-hot inputs, the naive cells, a per-row log-softmax;
    a tied head (cfg.tie) multiplies by the embedding table transposed."""
    inp = np.eye(cfg.vocab_size)[x]  # (T, B, V)
    if cfg.embed:
        inp = inp @ params["embed.W"]
    for layer in range(cfg.layers):
        xp = inp @ params[f"layer.{layer}.Wx"] + params[f"layer.{layer}.b"]
        inp, _ = naive_forward(cfg.cell, xp, state[layer], params[f"layer.{layer}.Wh"], cfg.activation)
    head_W = params["embed.W"].T if cfg.tie else params["head.W"]  # (H, V)
    logits = inp @ head_W + params["head.b"]
    log_probs = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
    return -np.take_along_axis(log_probs, y[..., None], axis=2)[..., 0]


# ------------------------------------------------------------------------------------ PyTorch's LSTM

def torch_lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    """nn.LSTM's equations, one layer: x (T, B, D), weight_ih (4H, D) and weight_hh (4H, H) with row blocks
    [i, f, g, o], biases (4H,). Returns the outputs h<1..T> (T, B, H) and (h_T, c_T)."""
    W_ii, W_if, W_ig, W_io = np.split(weight_ih, 4)
    W_hi, W_hf, W_hg, W_ho = np.split(weight_hh, 4)
    b_ii, b_if, b_ig, b_io = np.split(bias_ih, 4)
    b_hi, b_hf, b_hg, b_ho = np.split(bias_hh, 4)
    h, c = h0.copy(), c0.copy()
    outs = []
    for x_t in x:
        i = sigmoid(x_t @ W_ii.T + b_ii + h @ W_hi.T + b_hi)
        f = sigmoid(x_t @ W_if.T + b_if + h @ W_hf.T + b_hf)
        g = np.tanh(x_t @ W_ig.T + b_ig + h @ W_hg.T + b_hg)
        o = sigmoid(x_t @ W_io.T + b_io + h @ W_ho.T + b_ho)
        c = f * c + i * g
        h = o * np.tanh(c)
        outs.append(h)
    return np.stack(outs), (h, c)


def to_torch_lstm(Wx, Wh, b, bias_ih):
    """charlm's stacked LSTM weights (columns [u, f, o, c~]) as nn.LSTM's (rows [i, f, g, o]): transpose and
    move the candidate block before the output gate. PyTorch's two biases must add up to b, so bias_hh is
    b (reordered) minus the given bias_ih. Returns (weight_ih, weight_hh, bias_ih, bias_hh)."""
    H = Wh.shape[0]
    order = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]  # [u, f, c~, o] = [i, f, g, o]
    return Wx.T[order], Wh.T[order], bias_ih, b[order] - bias_ih


# ------------------------------------------------------------------------------------- PyTorch's GRU

def torch_gru(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    """nn.GRU's equations, one layer: row blocks [r, z, n]; r multiplies the recurrent product (h W_hn + b_hn).
    Returns the outputs h<1..T> (T, B, H) and h_T."""
    W_ir, W_iz, W_in = np.split(weight_ih, 3)
    W_hr, W_hz, W_hn = np.split(weight_hh, 3)
    b_ir, b_iz, b_in = np.split(bias_ih, 3)
    b_hr, b_hz, b_hn = np.split(bias_hh, 3)
    h = h0.copy()
    outs = []
    for x_t in x:
        r = sigmoid(x_t @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = sigmoid(x_t @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        n = np.tanh(x_t @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
        h = (1.0 - z) * n + z * h
        outs.append(h)
    return np.stack(outs), h


def torch_rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh"):
    """nn.RNN's equations, one layer: h' = tanh or relu(x W_ih^T + b_ih + h W_hh^T + b_hh). Returns the outputs
    h<1..T> (T, B, H) and h_T."""
    h = h0.copy()
    outs = []
    for x_t in x:
        z = x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
        h = np.tanh(z) if nonlinearity == "tanh" else np.maximum(z, 0.0)
        outs.append(h)
    return np.stack(outs), h


def to_torch_gru(Wx, Wh, b):
    """charlm's stacked GRU weights (columns [u, r, c~]) as nn.GRU's (rows [r, z, n]) with z = 1 - Γu, so the
    z rows are the u columns negated; all bias in bias_ih. Exact only where Γr is 1: PyTorch applies r after
    the recurrent product, charlm before. Returns (weight_ih, weight_hh, bias_ih, bias_hh)."""
    H = Wh.shape[0]
    u, r, c = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    weight_ih = np.concatenate([Wx[:, r].T, -Wx[:, u].T, Wx[:, c].T])
    weight_hh = np.concatenate([Wh[:, r].T, -Wh[:, u].T, Wh[:, c].T])
    bias_ih = np.concatenate([b[r], -b[u], b[c]])
    return weight_ih, weight_hh, bias_ih, np.zeros_like(bias_ih)
