"""The character language model: input (row gather or embedding), L stacked recurrent layers, softmax head.

Letters: T time, B batch, V vocabulary, E embedding width, D layer input width (V, E or H), H hidden,
G = gates * H, L layers, N = T * B predicted characters.

Parameters are a flat dict with stable names (shapes for cell gates k = 1, 2, 3, 4 for rnn, gru-simple,
gru, lstm):
- `embed.W` (V, E), only when `embed > 0`
- `layer.<l>.Wx` (D, k*H): input weights; with `embed == 0` layer 0's rows are gathered by character id
- `layer.<l>.Wh` (H, k*H): recurrent weights, gates stacked as documented in `charlm.engine.cells`
- `layer.<l>.b` (k*H,)
- `head.W` (H, V), `head.b` (V,)

State: a list with one tuple per layer, `(a,)` (rnn, gru, gru-simple) or `(a, c)` (lstm), each (B, H).
Ids and targets are time-major (T, B) of any integer dtype.
"""

import numbers

from charlm.engine import cells
from charlm.engine.backend import buffer, np
from charlm.engine.cells import GATES, STATE_ARRAYS
from charlm.errors import ConfigError
from charlm.models.config import ModelConfig


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in a fixed order (see the module docstring)."""
    V, H, E = cfg.vocab_size, cfg.hidden, cfg.embed
    G = GATES[cfg.cell] * H
    shapes = {}
    if E:
        shapes["embed.W"] = (V, E)
    for layer in range(cfg.layers):
        D = (E or V) if layer == 0 else H
        shapes[f"layer.{layer}.Wx"] = (D, G)
        shapes[f"layer.{layer}.Wh"] = (H, G)
        shapes[f"layer.{layer}.b"] = (G,)
    shapes["head.W"] = (H, V)
    shapes["head.b"] = (V,)
    return shapes


def init_params(cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh parameters in cfg.dtype.

    Initialisation (PyTorch's nn.LSTM / nn.Linear defaults): every weight matrix Wx, Wh and head.W is
    uniform in [-1/sqrt(H), 1/sqrt(H)]; `embed.W` is standard normal (as nn.Embedding); biases are zero
    except the LSTM forget gate's, which starts at 1 so the cell remembers by default.

    One exception: with one-hot input (embed 0) the first layer's Wx is itself an embedding, one row per
    character straight into gate space, so it is standard normal like nn.Embedding. At the uniform
    1/sqrt(H) scale a character moves each gate by ~0.04 and training lingers on the unigram plateau: LSTM
    256x2 on tinyshakespeare (default recipe, a 300-step run) has a training loss of 2.46 nats/char at step
    110 with the uniform rows and 1.86 with standard normal ones.
    """
    dtype = np.dtype(cfg.dtype)
    bound = 1.0 / np.sqrt(cfg.hidden)
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name == "embed.W" or (name == "layer.0.Wx" and not cfg.embed):
            params[name] = rng.standard_normal(shape).astype(dtype)
        elif name.endswith(".b"):
            params[name] = np.zeros(shape, dtype)
        else:
            params[name] = rng.uniform(-bound, bound, shape).astype(dtype)
    if cfg.cell == "lstm":
        H = cfg.hidden
        for layer in range(cfg.layers):
            params[f"layer.{layer}.b"][H:2 * H] = 1.0
    return params


def init_state(cfg: ModelConfig, batch: int) -> list[tuple[np.ndarray, ...]]:
    """The zero state for `batch` streams: one tuple per layer of (B, H) arrays in cfg.dtype."""
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
    n = STATE_ARRAYS[cfg.cell]
    return [tuple(np.zeros((int(batch), cfg.hidden), cfg.dtype) for _ in range(n)) for _ in range(cfg.layers)]


# ------------------------------------------------------------------------------------------ public API

def loss_and_grads(params, cfg: ModelConfig, x, y, state, *, rng=None, workspace=None):
    """Mean cross-entropy over a chunk and its exact gradients (truncated BPTT).

    Inputs:
    - params: dict name -> array, as from init_params
    - cfg: ModelConfig
    - x: input ids, of shape (T, B), any integer dtype
    - y: target ids, of shape (T, B)
    - state: initial state (list of per-layer tuples of (B, H) arrays); it gets no gradient
    - rng: np.random.Generator driving dropout (required when cfg.dropout > 0)
    - workspace: optional dict of reusable buffers (pass the same dict every call to avoid reallocation)

    Returns a tuple of:
    - loss: mean nats per target, a Python float
    - grads: dict keyed exactly like params (workspace buffers when a workspace is given: valid until the
      next call with that workspace)
    - new_state: the state after step T, plain arrays
    """
    loss, grads, new_state, _ = _loss_grads_dstate(params, cfg, x, y, state, rng, workspace)
    return loss, grads, new_state


def loss_grads_and_dstate(params, cfg: ModelConfig, x, y, state, *, rng=None, workspace=None):
    """As loss_and_grads, plus the gradient of the loss with respect to the initial state (a list shaped
    like `state`); used by gradient checks."""
    return _loss_grads_dstate(params, cfg, x, y, state, rng, workspace)


def forward_nll(params, cfg: ModelConfig, x, y, state, *, workspace=None):
    """Per-target negative log-likelihood for evaluation (no dropout, no gradients).

    Inputs: as loss_and_grads (without rng).

    Returns a tuple of:
    - nll: nats per target, of shape (T, B), float64
    - new_state: the state after step T, plain arrays
    """
    x, y, state = _check_inputs(params, cfg, x, y, state)
    T, B = x.shape
    out, new_state, _ = _forward_layers(params, cfg, x, state, None, workspace)
    logits = _head_logits(params, out, workspace)
    nll, _ = _softmax_nll(logits, y.reshape(-1), need_probs=False)
    return nll.reshape(T, B), new_state


def step_logits(params, cfg: ModelConfig, ids, state):
    """Advance B streams by one character each (sampling); the same cell code as training.

    Inputs:
    - ids: the current character of each stream, of shape (B,)
    - state: list of per-layer tuples of (B, H) arrays

    Returns a tuple of:
    - logits: unnormalised log-probabilities of the next character, of shape (B, V)
    - new_state: the state after this character, plain arrays
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ConfigError(f"step_logits needs ids of shape (B,), got shape {ids.shape}")
    x, _, state = _check_inputs(params, cfg, ids[None, :], None, state)
    out, new_state, _ = _forward_layers(params, cfg, x, state, None, None)
    return _head_logits(params, out, None), new_state


# ----------------------------------------------------------------------------------------- internals

def _check_inputs(params, cfg, x, y, state):
    """Validate params, ids and state; returns (x, y, state) with state cast to cfg.dtype."""
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    dtype = np.dtype(cfg.dtype)
    shapes = param_shapes(cfg)
    if set(params) != set(shapes):
        missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
        raise ConfigError(f"parameters do not match the config (missing {missing}, extra {extra})")
    for name, shape in shapes.items():
        p = params[name]
        if not isinstance(p, np.ndarray) or p.shape != shape or p.dtype != dtype:
            got = (getattr(p, "shape", None), getattr(p, "dtype", type(p).__name__))
            raise ConfigError(f"parameter {name} must be {dtype} of shape {shape}, got {got}")
    x = _check_ids(x, "x", cfg.vocab_size)
    if y is not None:
        y = _check_ids(y, "y", cfg.vocab_size)
        if y.shape != x.shape:
            raise ConfigError(f"targets y have shape {y.shape}, inputs x have {x.shape}")
    B = x.shape[1]
    n = STATE_ARRAYS[cfg.cell]
    if not isinstance(state, (list, tuple)) or len(state) != cfg.layers:
        raise ConfigError(f"state must be a list of {cfg.layers} per-layer tuples")
    checked = []
    for layer, arrays in enumerate(state):
        if not isinstance(arrays, (list, tuple)) or len(arrays) != n:
            raise ConfigError(f"state of layer {layer} must be a tuple of {n} arrays for a {cfg.cell}")
        arrays = tuple(np.asarray(a, dtype=dtype) for a in arrays)
        for a in arrays:
            if a.shape != (B, cfg.hidden):
                raise ConfigError(f"state of layer {layer} must have shape {(B, cfg.hidden)}, got {a.shape}")
        checked.append(arrays)
    return x, y, checked


def _check_ids(ids, name, vocab_size):
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[0] < 1 or ids.shape[1] < 1:
        raise ConfigError(f"{name} must have shape (T, B) with T, B >= 1, got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"{name} must hold integer ids, got dtype {ids.dtype}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        raise ConfigError(f"{name} holds ids outside [0, {vocab_size}): min {lo}, max {hi}")
    return ids


def _loss_grads_dstate(params, cfg, x, y, state, rng, ws):
    x, y, state = _check_inputs(params, cfg, x, y, state)
    if cfg.dropout > 0 and not isinstance(rng, np.random.Generator):
        raise ConfigError("dropout > 0 needs an rng (np.random.Generator) to draw its masks")
    T, B = x.shape
    N = T * B
    out, new_state, caches = _forward_layers(params, cfg, x, state, rng, ws)
    logits = _head_logits(params, out, ws)
    nll, dlogits = _softmax_nll(logits, y.reshape(-1), need_probs=True)
    loss = float(nll.sum() / N)
    dlogits /= N
    grads = {}
    dout = _head_backward(params, out, dlogits, grads, ws)
    dstate = _backward_layers(params, cfg, x, dout, caches, grads, ws)
    return loss, grads, new_state, dstate


def _forward_layers(params, cfg, x, state, rng, ws):
    """Input -> L recurrent layers (-> dropout). Returns (out (T, B, H), new_state, caches)."""
    T, B = x.shape
    H, G = cfg.hidden, GATES[cfg.cell] * cfg.hidden
    dtype = np.dtype(cfg.dtype)
    p = cfg.dropout if rng is not None else 0.0
    if cfg.embed:
        inp = buffer(ws, "embed.out", (T, B, cfg.embed), dtype)
        np.take(params["embed.W"], x, axis=0, out=inp, mode="clip")  # (T, B, E); ids already checked
    else:
        inp = None
    new_state, caches = [], []
    for layer in range(cfg.layers):
        Wx, Wh, b = (params[f"layer.{layer}.{k}"] for k in ("Wx", "Wh", "b"))
        xp = buffer(ws, f"layer.{layer}.xp", (T, B, G), dtype)  # (T, B, G)
        if inp is None:  # a one-hot row times Wx is a row of Wx: gather rows of Wx + b
            np.take(Wx + b, x, axis=0, out=xp, mode="clip")  # mode="clip" writes out unbuffered
        else:
            np.matmul(inp.reshape(T * B, -1), Wx, out=xp.reshape(T * B, G))
            xp += b
        hs, final, cache = cells.sequence_forward(cfg.cell, xp, state[layer], Wh, activation=cfg.activation,
                                                  ws=ws, tag=f"layer.{layer}.")
        mask = None
        if p > 0:
            mask = buffer(ws, f"layer.{layer}.mask", (T, B, H), dtype)
            rng.random((T, B, H), dtype=dtype, out=mask)
            np.greater_equal(mask, p, out=mask, casting="unsafe")
            mask *= 1.0 / (1.0 - p)
            dropped = buffer(ws, f"layer.{layer}.dropped", (T, B, H), dtype)
            np.multiply(hs, mask, out=dropped)
            hs = dropped
        caches.append((inp, cache, mask))
        new_state.append(final)
        inp = hs
    return inp, new_state, caches


def _backward_layers(params, cfg, x, dout, caches, grads, ws):
    """Backward through the stack; fills grads for embed and layers. Returns dstate (list of tuples)."""
    T, B = x.shape
    V = cfg.vocab_size
    dtype = np.dtype(cfg.dtype)
    dstate = [None] * cfg.layers
    dhs = dout
    for layer in range(cfg.layers - 1, -1, -1):
        inp, cache, mask = caches[layer]
        if mask is not None:
            dhs *= mask
        dxp, dstate[layer], dWh = cells.sequence_backward(dhs, cache)
        G = dxp.shape[2]
        dflat = dxp.reshape(T * B, G)
        Wx = params[f"layer.{layer}.Wx"]
        grads[f"layer.{layer}.Wh"] = dWh
        db = grads[f"layer.{layer}.b"] = buffer(ws, f"layer.{layer}.db", (G,), dtype)
        np.sum(dflat, axis=0, out=db)
        dWx = grads[f"layer.{layer}.Wx"] = buffer(ws, f"layer.{layer}.dWx", Wx.shape, dtype)
        if inp is None:
            np.matmul(_one_hot_t(x, V, dtype, ws), dflat, out=dWx)
        else:
            D = inp.shape[2]
            np.matmul(inp.reshape(T * B, D).T, dflat, out=dWx)
            dhs = buffer(ws, f"layer.{layer}.dinp", (T, B, D), dtype)
            np.matmul(dflat, Wx.T, out=dhs.reshape(T * B, D))
    if cfg.embed:
        dE = grads["embed.W"] = buffer(ws, "embed.dW", (V, cfg.embed), dtype)
        np.matmul(_one_hot_t(x, V, dtype, ws), dhs.reshape(T * B, cfg.embed), out=dE)
    return dstate


def _one_hot_t(x, V, dtype, ws):
    """The transposed one-hot matrix of the ids, of shape (V, N): a segment sum by id becomes one GEMM."""
    N = x.size
    onehot = buffer(ws, "onehot", (V, N), dtype)
    onehot.fill(0.0)
    onehot[x.reshape(-1), np.arange(N)] = 1.0
    return onehot


def _head_logits(params, out, ws):
    """Affine H -> V over all steps. Returns logits of shape (N, V)."""
    T, B, H = out.shape
    W, b = params["head.W"], params["head.b"]
    logits = buffer(ws, "head.logits", (T * B, W.shape[1]), W.dtype)
    np.matmul(out.reshape(T * B, H), W, out=logits)
    logits += b
    return logits


def _head_backward(params, out, dlogits, grads, ws):
    """Fills head.W, head.b grads; returns the gradient of the head's input, of shape (T, B, H)."""
    T, B, H = out.shape
    W = params["head.W"]
    grads["head.W"] = dW = buffer(ws, "head.dW", W.shape, W.dtype)
    np.matmul(out.reshape(T * B, H).T, dlogits, out=dW)
    grads["head.b"] = db = buffer(ws, "head.db", (W.shape[1],), W.dtype)
    np.sum(dlogits, axis=0, out=db)
    dout = buffer(ws, "head.dout", (T, B, H), W.dtype)
    np.matmul(dlogits, W.T, out=dout.reshape(T * B, H))
    return dout


def _softmax_nll(logits, targets, need_probs):
    """Stable softmax cross-entropy, overwriting logits.

    Inputs:
    - logits: of shape (N, V), overwritten (with the softmax probabilities minus the one-hot targets
      when need_probs, i.e. the gradient of the summed loss)
    - targets: ids of shape (N,)

    Returns (nll of shape (N,) float64, logits or None).
    """
    N = logits.shape[0]
    rows = np.arange(N)
    logits -= logits.max(axis=1, keepdims=True)
    target_logit = logits[rows, targets].astype(np.float64)
    np.exp(logits, out=logits)
    total = logits.sum(axis=1, dtype=np.float64)
    nll = np.log(total) - target_logit
    if not need_probs:
        return nll, None
    logits /= total.astype(logits.dtype)[:, None]
    logits[rows, targets] -= 1.0
    return nll, logits
