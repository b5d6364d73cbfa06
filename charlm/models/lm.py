"""The language model: the recurrent encoder (`charlm.models.encoder`) and the LM head, an affine H -> V
layer whose softmax predicts the next token (character or word) at every step.

Letters: T time, B batch, V vocabulary, E embedding width, H hidden, N = T * B predicted tokens.

Parameters are a flat dict with stable names, in the order of `param_shapes`: the encoder's (`embed.W`,
`layer.<l>.Wx`, `layer.<l>.Wh`, `layer.<l>.b`), then the head's `head.W` (H, V) and `head.b` (V,).
Checkpoints store them under these names. With `cfg.tie` there is no `head.W`: the head's weight is the
embedding table transposed, logits = out embed.W^T + head.b (E == H), and the table's gradient is the sum
of its two uses, the input gather's segment sum and the head's dlogits^T out (V, H). State: as the
encoder's (`init_state`). Ids and targets are time-major (T, B) of any integer dtype.

The loss is the mean negative log-likelihood of the targets, or with a per-target `mask` (T, B) of weights
(0/1 for padding) sum(mask * nll) / sum(mask); a target of weight 0 adds nothing to the loss or gradients.
"""

from charlm.engine import layers
from charlm.engine.backend import np
from charlm.engine.rows import map_row_blocks
from charlm.errors import ConfigError
from charlm.models.config import ModelConfig
from charlm.models.encoder import (
    check_ids,
    check_params,
    check_state,
    encoder_activations,
    encoder_backward,
    encoder_forward,
    encoder_param_shapes,
    init_state,
    init_weights,
)
from charlm.models.inference import encoder_infer, join_states, state_rows

__all__ = ["forward_nll", "init_params", "init_state", "loss_and_grads", "loss_grads_and_dstate", "param_shapes",
           "step_logits", "trace"]


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in a fixed order: the encoder's, then the head's."""
    shapes = encoder_param_shapes(cfg)
    if not cfg.tie:
        shapes["head.W"] = (cfg.hidden, cfg.vocab_size)
    shapes["head.b"] = (cfg.vocab_size,)
    return shapes


def init_params(cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh parameters in cfg.dtype, drawn in param_shapes order (`charlm.models.encoder.init_weights`).

    A tied table (`cfg.tie`) is also the head's weight, so it takes the head's uniform init: standard normal
    rows would start the logits at order sqrt(H) times the outputs' size, far from the uniform prediction.
    """
    return init_weights(cfg, param_shapes(cfg), rng, normal_table=not cfg.tie)


# ------------------------------------------------------------------------------------------ public API

def loss_and_grads(params, cfg: ModelConfig, x, y, state, *, mask=None, rng=None, workspace=None):
    """Mean cross-entropy over a chunk and its exact gradients (truncated BPTT).

    Inputs:
    - params: dict name -> array, as from init_params
    - cfg: ModelConfig
    - x: input ids, of shape (T, B), any integer dtype
    - y: target ids, of shape (T, B); masked ones must still be valid ids
    - state: initial state (list of per-layer tuples of (B, H) arrays); it gets no gradient
    - mask: optional per-target weights, of shape (T, B), finite and >= 0 with a positive sum (0/1 marks
      padding); None weighs every target equally
    - rng: np.random.Generator driving dropout (required when cfg.dropout > 0)
    - workspace: optional dict of reusable buffers (pass the same dict every call to avoid reallocation)

    Returns a tuple of:
    - loss: mean nats per target (weighted by mask), a Python float
    - grads: dict keyed exactly like params (workspace buffers when a workspace is given: valid until the
      next call with that workspace)
    - new_state: the state after step T, plain arrays
    """
    loss, grads, new_state, _ = _loss_grads_dstate(params, cfg, x, y, state, mask, rng, workspace)
    return loss, grads, new_state


def loss_grads_and_dstate(params, cfg: ModelConfig, x, y, state, *, mask=None, rng=None, workspace=None):
    """As loss_and_grads, plus the gradient of the loss with respect to the initial state (a list shaped
    like `state`); used by gradient checks."""
    return _loss_grads_dstate(params, cfg, x, y, state, mask, rng, workspace)


def forward_nll(params, cfg: ModelConfig, x, y, state, *, workspace=None):
    """Per-target negative log-likelihood for evaluation (no dropout, no gradients), forward only in blocks of
    streams side by side (`charlm.models.inference`); a caller with a mask weighs the returned nll itself.

    Inputs: as loss_and_grads (without mask and rng).

    Returns a tuple of:
    - nll: nats per target, of shape (T, B), float64
    - new_state: the state after step T, plain arrays
    """
    x, y, state, _ = _check_inputs(params, cfg, x, y, state)

    def block(rows, ws):  # the streams `rows`, forward only
        out, new_state = encoder_infer(params, cfg, x[:, rows], state_rows(state, rows), ws=ws)
        _, nll, _ = _head_forward(params, cfg, out, y[:, rows], None, ws)
        return nll.reshape(x.shape[0], -1), new_state

    parts = map_row_blocks(block, x.shape[1], workspace)
    return np.concatenate([nll for nll, _ in parts], axis=1), join_states([s for _, s in parts])


def step_logits(params, cfg: ModelConfig, ids, state):
    """Advance B streams by one token each (sampling), forward only (`charlm.models.inference`).

    Inputs:
    - ids: the current token of each stream, of shape (B,)
    - state: list of per-layer tuples of (B, H) arrays

    Returns a tuple of:
    - logits: unnormalised log-probabilities of the next token, of shape (B, V)
    - new_state: the state after this token, plain arrays
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ConfigError(f"step_logits needs ids of shape (B,), got shape {ids.shape}")
    x, _, state, _ = _check_inputs(params, cfg, ids[None, :], None, state)
    # One block: a step is too short to pay for setting the BLAS pools to one thread and back each time.
    out, new_state = encoder_infer(params, cfg, x, state)
    logits, _ = _head_logits(params, cfg, out, None)
    return logits[0], new_state


def trace(params, cfg: ModelConfig, x, state):
    """Every layer's activations at every step of a chunk, for inspection (evaluation mode: no dropout).

    Inputs: as forward_nll (without targets).

    Returns a tuple of:
    - acts: dict name -> fresh array, each of shape (T, B, ...): `embed` (T, B, E) when embed > 0; per layer
      `layer.<l>.a` (the outputs a<t>, (T, B, H)), for lstm `layer.<l>.c` (the memory cells c<t>), and the
      gates after their nonlinearities `layer.<l>.<gate>`, gate in u, r, f, o, c~ as the cell has them
      (`charlm.engine.cells.GATE_NAMES`); `head.logits` (T, B, V)
    - new_state: the state after step T, as forward_nll's
    """
    x, _, state, _ = _check_inputs(params, cfg, x, None, state)
    out, new_state, cache = encoder_forward(params, cfg, x, state)
    acts = encoder_activations(cfg, cache)
    acts["head.logits"], _ = _head_logits(params, cfg, out, None)
    return acts, new_state


# ----------------------------------------------------------------------------------------- internals

def _check_inputs(params, cfg, x, y, state, mask=None):
    """Validate params, ids, state and mask; returns (x, y, state cast to cfg.dtype, mask as float64)."""
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if cfg.kind != "lm":
        raise ConfigError(f"this model is a {cfg.kind}, not a language model: use charlm tag, charlm classify or "
                          f"charlm evaluate")
    if cfg.bidirectional:
        raise ConfigError("a language model cannot be bidirectional: its reverse direction would read the "
                          "token it predicts")
    check_params(params, param_shapes(cfg), np.dtype(cfg.dtype))
    x = check_ids(x, "x", cfg.vocab_size)
    if y is not None:
        y = check_ids(y, "y", cfg.vocab_size)
        if y.shape != x.shape:
            raise ConfigError(f"targets y have shape {y.shape}, inputs x have {x.shape}")
    state = check_state(cfg, state, x.shape[1])
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float64)
        if mask.shape != x.shape:
            raise ConfigError(f"mask has shape {mask.shape}, inputs x have {x.shape}")
        if not np.all(np.isfinite(mask)) or mask.min() < 0 or not mask.sum() > 0:
            raise ConfigError("mask must hold finite weights >= 0 with a positive sum")
    return x, y, state, mask


def _loss_grads_dstate(params, cfg, x, y, state, mask, rng, ws):
    x, y, state, mask = _check_inputs(params, cfg, x, y, state, mask)
    if cfg.dropout > 0 and not isinstance(rng, np.random.Generator):
        raise ConfigError("dropout > 0 needs an rng (np.random.Generator) to draw its masks")
    out, new_state, enc_cache = encoder_forward(params, cfg, x, state, rng=rng, ws=ws)
    loss, _, head_cache = _head_forward(params, cfg, out, y, mask, ws)
    grads = {}
    dout, dtable = _head_backward(head_cache, grads)
    dstate = encoder_backward(cfg, dout, enc_cache, grads)
    if dtable is not None:
        grads["embed.W"] += dtable  # dE = segment_sum(dembedded by id) + dlogits^T out: the table's two uses
    return loss, grads, new_state, dstate


def _head_logits(params, cfg, out, ws):
    """Logits of the LM head: out W + b with W = head.W (H, V), or tied, out embed.W^T + b (embed.W (V, E),
    E == H). Inputs: out (T, B, H). Returns (logits (T, B, V), cache for _head_backward)."""
    if cfg.tie:
        logits, cache = layers.affine_transposed_forward(out, params["embed.W"], params["head.b"], ws=ws,
                                                         tag="head.")
    else:
        logits, cache = layers.affine_forward(out, params["head.W"], params["head.b"], ws=ws, tag="head.")
    return logits, (cfg.tie, cache)


def _head_forward(params, cfg, out, y, mask, ws):
    """The LM head: logits (_head_logits), then softmax cross-entropy against y weighted by mask.

    Inputs: out (T, B, H); y (T, B); mask (T, B) float64 or None.
    Returns (loss, nll of shape (N,) float64, cache for _head_backward).
    """
    T, B, _ = out.shape
    logits, logits_cache = _head_logits(params, cfg, out, ws)
    weights = None if mask is None else mask.reshape(-1)
    loss, nll, nll_cache = layers.softmax_nll_forward(logits.reshape(T * B, -1), y.reshape(-1), weights)
    return loss, nll, (T, B, logits_cache, nll_cache)


def _head_backward(cache, grads):
    """Fills grads for head.b and (untied) head.W.

    Returns a tuple of:
    - dout: the gradient of the encoder's output, of shape (T, B, H)
    - dtable: tied, the head's share of embed.W's gradient, dlogits^T out of shape (V, E); else None
    """
    T, B, (tie, affine_cache), nll_cache = cache
    dlogits = layers.softmax_nll_backward(nll_cache).reshape(T, B, -1)  # (T, B, V)
    if tie:
        dout, dtable, grads["head.b"] = layers.affine_transposed_backward(dlogits, affine_cache)
        return dout, dtable
    dout, grads["head.W"], grads["head.b"] = layers.affine_backward(dlogits, affine_cache)
    return dout, None


def gradcheck_case(params, cfg: ModelConfig, rng: np.random.Generator, *, seq_len: int, batch: int, seed: int):
    """Random inputs for `charlm.models.gradcheck.check_model`: (T, B) ids and targets read from a random
    carried state. -> (run, state), run() giving (loss, grads, dstate) with the same dropout masks each call."""
    x = rng.integers(0, cfg.vocab_size, (seq_len, batch))
    y = rng.integers(0, cfg.vocab_size, (seq_len, batch))
    state = [tuple(0.5 * rng.standard_normal(a.shape) for a in layer) for layer in init_state(cfg, batch)]

    def run():
        loss, grads, _, dstate = loss_grads_and_dstate(params, cfg, x, y, state,
                                                       rng=np.random.default_rng(seed + 1))
        return loss, grads, dstate

    return run, state
