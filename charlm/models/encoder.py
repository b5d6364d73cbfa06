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

Bidirectional (`cfg.bidirectional`): every layer also runs a second set of weights, `layer.<l>.rev.Wx`,
`.rev.Wh`, `.rev.b`, over each stream's steps in reverse, from the zero state at the stream's last real step
(`lengths`), and concatenates the two outputs: (T, B, 2H) for the next layer (whose D is then 2H) and the
head. Padding after a stream's length stays in place, so neither direction reads it before a real step.
The state (given and returned) is the forward direction's; the reverse direction carries none.
"""

import numbers

from charlm.engine import cells, layers
from charlm.engine.backend import np
from charlm.engine.cells import GATES, STATE_ARRAYS
from charlm.errors import ConfigError
from charlm.models.config import ModelConfig


def directions(cfg: ModelConfig) -> tuple[str, ...]:
    """Parameter-name infixes of a layer's directions: ("",) or, bidirectional, ("", "rev.")."""
    return ("", "rev.") if cfg.bidirectional else ("",)


def output_width(cfg: ModelConfig) -> int:
    """Width of the encoder's output features: H, or 2H when bidirectional."""
    return cfg.hidden * len(directions(cfg))


def encoder_param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the encoder's parameters, in a fixed order (see the module docstring)."""
    V, H, E = cfg.vocab_size, cfg.hidden, cfg.embed
    G = GATES[cfg.cell] * H
    shapes = {}
    if E:
        shapes["embed.W"] = (V, E)
    for layer in range(cfg.layers):
        D = (E or V) if layer == 0 else output_width(cfg)
        for direction in directions(cfg):
            shapes[f"layer.{layer}.{direction}Wx"] = (D, G)
            shapes[f"layer.{layer}.{direction}Wh"] = (H, G)
            shapes[f"layer.{layer}.{direction}b"] = (G,)
    return shapes


def init_weights(cfg: ModelConfig, shapes: dict, rng: np.random.Generator, *, normal_table: bool = True):
    """Fresh parameters of the given shapes in cfg.dtype, drawn in their order.

    Initialisation (PyTorch's nn.LSTM / nn.Linear defaults): every weight matrix Wx, Wh and a head's W is
    uniform in [-1/sqrt(H), 1/sqrt(H)]; `embed.W` is standard normal (as nn.Embedding) when `normal_table`;
    biases are zero except the LSTM forget gate's, which starts at 1 so the cell remembers by default.

    With one-hot input (embed 0) the first layer's Wx is itself an embedding, one row per character straight
    into gate space, so it is standard normal like nn.Embedding: a character must move the gates by order 1
    for training to leave the unigram plateau quickly, and 1/sqrt(H)-sized rows move them by far less.
    """
    dtype = np.dtype(cfg.dtype)
    bound = 1.0 / np.sqrt(cfg.hidden)
    one_hot_rows = {f"layer.0.{d}Wx" for d in directions(cfg)} if not cfg.embed else set()
    params = {}
    for name, shape in shapes.items():
        if (name == "embed.W" and normal_table) or name in one_hot_rows:
            params[name] = rng.standard_normal(shape).astype(dtype)
        elif name.endswith(".b"):
            params[name] = np.zeros(shape, dtype)
        else:
            params[name] = rng.uniform(-bound, bound, shape).astype(dtype)
    if cfg.cell == "lstm":
        H = cfg.hidden
        for layer in range(cfg.layers):
            for direction in directions(cfg):
                params[f"layer.{layer}.{direction}b"][H:2 * H] = 1.0  # the forget gate Γf (charlm.engine.cells)
    return params


def copy_encoder(params: dict, source: dict, source_path: str) -> list[str]:
    """Copy a pre-trained encoder's parameters (a language model's `embed.W` and `layer.*`) into `params` of a
    new model over the same vocabulary, in place, cast to `params`' dtype; the rest (a head, a reverse
    direction) keeps its fresh values. Returns the names copied. A parameter of both whose shapes differ is a
    ConfigError naming both shapes (`source_path` names the source)."""
    copied = []
    for name, value in source.items():
        if name not in params or not (name == "embed.W" or name.startswith("layer.")):
            continue
        if params[name].shape != value.shape:
            raise ConfigError(f"{source_path}: its {name} is {value.shape}, the new model's is {params[name].shape}; "
                              f"a pre-trained encoder must have the new model's shapes")
        params[name] = value.astype(params[name].dtype)
        copied.append(name)
    return copied


def reversal(lengths, T: int) -> np.ndarray:
    """Time indices (T, B) that reverse each stream's first lengths[b] steps and keep its padding in place;
    applying them twice gives the identity. `lengths` (B,) with 1 <= lengths[b] <= T."""
    t = np.arange(T)[:, None]
    n = np.asarray(lengths)[None, :]
    return np.where(t < n, n - 1 - t, t)


def _reversed(values, rev):
    """values (T, B, ...) with each stream's real steps in reverse order (a fresh contiguous array)."""
    return values[rev, np.arange(rev.shape[1])[None, :]]


def final_steps(cfg: ModelConfig, lengths) -> np.ndarray:
    """The step (B, F) at which each feature of the encoder's output holds its direction's final state: the
    forward direction's at each stream's last real step (lengths - 1), the reverse direction's at step 0,
    where it has read the whole stream backwards."""
    rows = np.broadcast_to(np.asarray(lengths) - 1, (output_width(cfg), len(lengths))).T.copy()
    if cfg.bidirectional:
        rows[:, cfg.hidden:] = 0
    return rows


def read_steps(out, rows) -> np.ndarray:
    """out (T, B, F) read at step rows[b, f] for each stream b and feature f -> (B, F)."""
    B, F = rows.shape
    return out[rows, np.arange(B)[:, None], np.arange(F)[None, :]]


def read_steps_backward(dread, shape, rows) -> np.ndarray:
    """Backward of read_steps: dread (B, F) routed to the steps that were read, zero elsewhere -> (T, B, F)."""
    B, F = rows.shape
    dout = np.zeros(shape, dread.dtype)
    dout[rows, np.arange(B)[:, None], np.arange(F)[None, :]] = dread  # d out<rows> = d read
    return dout


def init_state(cfg: ModelConfig, batch: int) -> list[tuple[np.ndarray, ...]]:
    """The zero state for `batch` streams: one tuple per layer of (B, H) arrays in cfg.dtype."""
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
    n = STATE_ARRAYS[cfg.cell]
    return [tuple(np.zeros((int(batch), cfg.hidden), cfg.dtype) for _ in range(n)) for _ in range(cfg.layers)]


def encoder_forward(params, cfg: ModelConfig, x, state, *, lengths=None, rng=None, ws=None):
    """Input layer -> L recurrent layers, each followed by inverted dropout when rng is given.

    Inputs (validated by the caller):
    - params: dict with at least the encoder's parameters
    - x: input ids, of shape (T, B)
    - state: list of per-layer tuples of (B, H) arrays in cfg.dtype (the forward direction's)
    - lengths: bidirectional only: each stream's real steps, of shape (B,); None means all T
    - rng: np.random.Generator for the dropout masks; None means evaluation (no dropout)
    - ws: optional workspace dict

    Returns a tuple of:
    - out: the top layer's features, of shape (T, B, H), or (T, B, 2H) when bidirectional
    - new_state: the forward direction's state after step T, fresh arrays
    - cache: for encoder_backward and encoder_activations
    """
    p = cfg.dropout if rng is not None else 0.0
    T, B = x.shape
    rev = reversal(np.full(B, T) if lengths is None else lengths, T) if cfg.bidirectional else None
    embedded, embed_cache = None, None
    if cfg.embed:
        embedded, embed_cache = layers.embedding_forward(params["embed.W"], x, ws=ws, tag="embed.")  # (T, B, E)
    inp = embedded
    layer_caches, new_state = [], []
    for layer in range(cfg.layers):
        outputs, direction_caches = [], []
        for direction in directions(cfg):
            tag = f"layer.{layer}.{direction}"
            Wx, Wh, b = (params[tag + k] for k in ("Wx", "Wh", "b"))
            if inp is None:
                xp, in_cache = layers.onehot_affine_forward(x, Wx, b, ws=ws, tag=tag)  # (T, B, G)
            else:
                xp, in_cache = layers.affine_forward(inp, Wx, b, ws=ws, tag=tag)  # (T, B, G)
            if direction:
                start = tuple(np.zeros_like(s) for s in state[layer])
                a_out, _, cell_cache = cells.sequence_forward(cfg.cell, _reversed(xp, rev), start, Wh,
                                                              activation=cfg.activation, ws=ws, tag=tag)
                a_out = _reversed(a_out, rev)  # back to the streams' own order
            else:
                a_out, final, cell_cache = cells.sequence_forward(cfg.cell, xp, state[layer], Wh,
                                                                  activation=cfg.activation, ws=ws, tag=tag)
                new_state.append(final)
            outputs.append(a_out)
            direction_caches.append((in_cache, cell_cache))
        a_out = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2)  # (T, B, H or 2H)
        inp, drop_cache = layers.dropout_forward(a_out, p, rng, ws=ws, tag=f"layer.{layer}.")
        layer_caches.append((direction_caches, drop_cache))
    return inp, new_state, (embedded, embed_cache, layer_caches, rev)


def encoder_backward(cfg: ModelConfig, dout, cache, grads):
    """Backward through the encoder; fills `grads` for every encoder parameter.

    Inputs:
    - dout: gradient of the loss with respect to the encoder's output, of shape (T, B, H or 2H); overwritten
    - cache: from encoder_forward
    - grads: dict to fill (workspace buffers when the forward had a workspace)

    Returns dstate: the gradient of the initial (forward) state, a list shaped like `state`.
    """
    _, embed_cache, layer_caches, rev = cache
    H = cfg.hidden
    dstate = [None] * cfg.layers
    d = dout
    for layer in range(cfg.layers - 1, -1, -1):
        direction_caches, drop_cache = layer_caches[layer]
        d = layers.dropout_backward(d, drop_cache)  # d = d * mask
        d_input = None
        for k, (direction, (in_cache, cell_cache)) in enumerate(zip(directions(cfg), direction_caches,
                                                                    strict=True)):
            tag = f"layer.{layer}.{direction}"
            d_dir = d if len(direction_caches) == 1 else d[:, :, k * H:(k + 1) * H]  # this direction's half
            if direction:
                dxp, _, grads[tag + "Wh"] = cells.sequence_backward(_reversed(d_dir, rev), cell_cache)
                dxp = _reversed(dxp, rev)  # d xp<t> of the step that read x<t>
            else:
                dxp, dstate[layer], grads[tag + "Wh"] = cells.sequence_backward(np.ascontiguousarray(d_dir),
                                                                                cell_cache)
            if layer == 0 and not cfg.embed:
                grads[tag + "Wx"], grads[tag + "b"] = layers.onehot_affine_backward(dxp, in_cache)
            else:
                d_in, grads[tag + "Wx"], grads[tag + "b"] = layers.affine_backward(dxp, in_cache)
                d_input = d_in if d_input is None else d_input + d_in  # the input feeds both directions
        d = d_input
    if cfg.embed:
        grads["embed.W"] = layers.embedding_backward(d, embed_cache)
    return dstate


def encoder_activations(cfg: ModelConfig, cache) -> dict[str, np.ndarray]:
    """Every activation of an encoder_forward run without dropout, copied, each of shape (T, B, ...):
    `embed` (T, B, E) when embed > 0, then per layer `layer.<l>.a` (the outputs a<t>), `layer.<l>.c` (lstm's
    memory cells c<t>) and the gates after their nonlinearities `layer.<l>.<gate>`, gate in
    `charlm.engine.cells.GATE_NAMES` (u, r, f, o, c~); a bidirectional layer's reverse direction as
    `layer.<l>.rev.<name>`, in the streams' own time order."""
    embedded, _, layer_caches, rev = cache
    acts = {}
    if embedded is not None:
        acts["embed"] = embedded.copy()
    for layer, (direction_caches, _) in enumerate(layer_caches):
        for direction, (_, cell_cache) in zip(directions(cfg), direction_caches, strict=True):
            for name, value in cells.step_activations(cell_cache).items():
                key = f"layer.{layer}.{direction}{name}"
                acts[key] = _reversed(value, rev) if direction else value.copy()
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


def check_lengths(lengths, T: int, B: int) -> np.ndarray:
    """Documents' real steps: B integers in [1, T]; returned as an array, else ConfigError."""
    lengths = np.asarray(lengths)
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer) or lengths.min() < 1 \
            or lengths.max() > T:
        raise ConfigError(f"lengths must be {B} integers in [1, {T}], got {lengths!r}")
    return lengths


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
