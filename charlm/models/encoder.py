"""The recurrent encoder every model shares: input layer, L stacked recurrent layers, dropout after each.

It maps ids (T, B) to features (T, B, H); a head sits on top (the language model's softmax over the next
token in `charlm.models.lm`, which may share `embed.W` as its weight; a tagger's or classifier's later).

Letters: T time, B batch, V vocabulary, E embedding width, D a layer's input width (V, E or H), H hidden,
G = gates * H, L layers.

Parameters (gates k = 1, 2, 3, 4 for rnn, gru-simple, gru, lstm):
- `embed.W` (V, E), only when `embed > 0`
- `layer.<l>.Wx` (D, k*H): input weights; with `embed == 0` layer 0's input is one-hot, so x<t> Wx is row
  x<t> of Wx (a row gather, `layers.onehot_affine_forward`)
- `layer.<l>.Wh` (H, k*H): recurrent weights, gates stacked as documented in `charlm.engine.cells`
- `layer.<l>.b` (k*H,)

State: a list with one tuple per layer, `(a,)` (rnn, gru, gru-simple) or `(a, c)` (lstm), each (B, H).
Inverted dropout (training only, when an rng is given) follows every recurrent layer: between layers and
before the head.
"""

import numbers

from charlm.engine import cells, layers
from charlm.engine.backend import np
from charlm.engine.cells import GATES, STATE_ARRAYS
from charlm.errors import ConfigError
from charlm.models.config import ModelConfig


def encoder_param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the encoder's parameters, in a fixed order (see the module docstring)."""
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
    return shapes


def init_state(cfg: ModelConfig, batch: int) -> list[tuple[np.ndarray, ...]]:
    """The zero state for `batch` streams: one tuple per layer of (B, H) arrays in cfg.dtype."""
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
    n = STATE_ARRAYS[cfg.cell]
    return [tuple(np.zeros((int(batch), cfg.hidden), cfg.dtype) for _ in range(n)) for _ in range(cfg.layers)]


def encoder_forward(params, cfg: ModelConfig, x, state, *, rng=None, ws=None):
    """Input layer -> L recurrent layers, each followed by inverted dropout when rng is given.

    Inputs (validated by the caller):
    - params: dict with at least the encoder's parameters
    - x: input ids, of shape (T, B)
    - state: list of per-layer tuples of (B, H) arrays in cfg.dtype
    - rng: np.random.Generator for the dropout masks; None means evaluation (no dropout)
    - ws: optional workspace dict

    Returns a tuple of:
    - out: the top layer's features, of shape (T, B, H)
    - new_state: the state after step T, fresh arrays
    - cache: for encoder_backward and encoder_activations
    """
    p = cfg.dropout if rng is not None else 0.0
    embedded, embed_cache = None, None
    if cfg.embed:
        embedded, embed_cache = layers.embedding_forward(params["embed.W"], x, ws=ws, tag="embed.")  # (T, B, E)
    inp = embedded
    layer_caches, new_state = [], []
    for layer in range(cfg.layers):
        Wx, Wh, b = (params[f"layer.{layer}.{k}"] for k in ("Wx", "Wh", "b"))
        tag = f"layer.{layer}."
        if inp is None:
            xp, in_cache = layers.onehot_affine_forward(x, Wx, b, ws=ws, tag=tag)  # (T, B, G)
        else:
            xp, in_cache = layers.affine_forward(inp, Wx, b, ws=ws, tag=tag)  # (T, B, G)
        a_out, final, cell_cache = cells.sequence_forward(cfg.cell, xp, state[layer], Wh,
                                                          activation=cfg.activation, ws=ws, tag=tag)
        inp, drop_cache = layers.dropout_forward(a_out, p, rng, ws=ws, tag=tag)  # (T, B, H)
        layer_caches.append((in_cache, cell_cache, drop_cache))
        new_state.append(final)
    return inp, new_state, (embedded, embed_cache, layer_caches)


def encoder_backward(cfg: ModelConfig, dout, cache, grads):
    """Backward through the encoder; fills `grads` for every encoder parameter.

    Inputs:
    - dout: gradient of the loss with respect to the encoder's output, of shape (T, B, H); overwritten
    - cache: from encoder_forward
    - grads: dict to fill (workspace buffers when the forward had a workspace)

    Returns dstate: the gradient of the initial state, a list shaped like `state`.
    """
    _, embed_cache, layer_caches = cache
    dstate = [None] * cfg.layers
    d = dout
    for layer in range(cfg.layers - 1, -1, -1):
        in_cache, cell_cache, drop_cache = layer_caches[layer]
        d = layers.dropout_backward(d, drop_cache)  # d = d * mask
        dxp, dstate[layer], grads[f"layer.{layer}.Wh"] = cells.sequence_backward(d, cell_cache)
        if layer == 0 and not cfg.embed:
            grads["layer.0.Wx"], grads["layer.0.b"] = layers.onehot_affine_backward(dxp, in_cache)
        else:
            d, grads[f"layer.{layer}.Wx"], grads[f"layer.{layer}.b"] = layers.affine_backward(dxp, in_cache)
    if cfg.embed:
        grads["embed.W"] = layers.embedding_backward(d, embed_cache)
    return dstate


def encoder_activations(cfg: ModelConfig, cache) -> dict[str, np.ndarray]:
    """Every activation of an encoder_forward run without dropout, copied, each of shape (T, B, ...):
    `embed` (T, B, E) when embed > 0, then per layer `layer.<l>.a` (the outputs a<t>), `layer.<l>.c` (lstm's
    memory cells c<t>) and the gates after their nonlinearities `layer.<l>.<gate>`, gate in
    `charlm.engine.cells.GATE_NAMES` (u, r, f, o, c~)."""
    embedded, _, layer_caches = cache
    acts = {}
    if embedded is not None:
        acts["embed"] = embedded.copy()
    for layer, (_, cell_cache, _) in enumerate(layer_caches):
        for name, value in cells.step_activations(cell_cache).items():
            acts[f"layer.{layer}.{name}"] = value.copy()
    return acts


# ---------------------------------------------------------------------------------------- validation

def check_params(params, shapes: dict, dtype) -> None:
    """Every name in `shapes` and no other, each an ndarray of that shape and `dtype`; else ConfigError."""
    if set(params) != set(shapes):
        missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
        raise ConfigError(f"parameters do not match the config (missing {missing}, extra {extra})")
    for name, shape in shapes.items():
        p = params[name]
        if not isinstance(p, np.ndarray) or p.shape != shape or p.dtype != dtype:
            got = (getattr(p, "shape", None), getattr(p, "dtype", type(p).__name__))
            raise ConfigError(f"parameter {name} must be {dtype} of shape {shape}, got {got}")


def check_ids(ids, name: str, vocab_size: int) -> np.ndarray:
    """Ids of shape (T, B), T, B >= 1, any integer dtype, all in [0, vocab_size); returned as an array."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[0] < 1 or ids.shape[1] < 1:
        raise ConfigError(f"{name} must have shape (T, B) with T, B >= 1, got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"{name} must hold integer ids, got dtype {ids.dtype}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        raise ConfigError(f"{name} holds ids outside [0, {vocab_size}): min {lo}, max {hi}")
    return ids


def check_state(cfg: ModelConfig, state, batch: int) -> list[tuple[np.ndarray, ...]]:
    """A list of cfg.layers tuples of STATE_ARRAYS[cell] arrays of shape (batch, H); returned cast to
    cfg.dtype."""
    dtype = np.dtype(cfg.dtype)
    n = STATE_ARRAYS[cfg.cell]
    if not isinstance(state, (list, tuple)) or len(state) != cfg.layers:
        raise ConfigError(f"state must be a list of {cfg.layers} per-layer tuples")
    checked = []
    for layer, arrays in enumerate(state):
        if not isinstance(arrays, (list, tuple)) or len(arrays) != n:
            raise ConfigError(f"state of layer {layer} must be a tuple of {n} arrays for a {cfg.cell}")
        arrays = tuple(np.asarray(a, dtype=dtype) for a in arrays)
        for a in arrays:
            if a.shape != (batch, cfg.hidden):
                raise ConfigError(f"state of layer {layer} must have shape {(batch, cfg.hidden)}, got {a.shape}")
        checked.append(arrays)
    return checked
