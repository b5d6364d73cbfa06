"""The classifier: the recurrent encoder (`charlm.models.encoder`), a pooling of its states over each whole text,
and one softmax over the labels (many-to-one).

Letters: T time (the longest text of the batch), B batch (texts), F the encoder's output width (H, or 2H
bidirectional), K labels.

Parameters: the encoder's, then `head.0.W` (F, K) and `head.0.b` (K,) (the names a one-head tagger uses, so
checkpoints validate alike). Texts are read whole from the zero state, padded to T; `lengths` (B,) says where
each ends. Pooling (`cfg.pool`) turns the states a<1..n> of a text into one vector:
- last: a<n>; bidirectional, each direction's final state: the forward a<n> and the reverse direction's
  output at step 1 (it has read the whole text backwards)
- mean: the mean of a<1..n>
- max: the elementwise max of a<1..n>
Padding steps never enter a pooled vector, so they get exactly zero gradient.
"""

from charlm.engine import layers
from charlm.engine.backend import np
from charlm.engine.rows import map_row_blocks
from charlm.errors import ConfigError
from charlm.models.config import ModelConfig
from charlm.models.encoder import (
    check_ids,
    check_lengths,
    check_params,
    encoder_backward,
    encoder_forward,
    final_steps,
    init_state,
    init_weights,
    read_steps,
    read_steps_backward,
)
from charlm.models.inference import encoder_infer
from charlm.models.tagger import param_shapes

__all__ = ["init_params", "loss_and_grads", "param_shapes", "predict"]


def init_params(cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh parameters in cfg.dtype, drawn in param_shapes order (see `charlm.models.encoder.init_weights`)."""
    _check_config(cfg)
    return init_weights(cfg, param_shapes(cfg), rng)


def pool_forward(out, lengths, cfg: ModelConfig):
    """The pooled vector of every text.

    Inputs: out (T, B, F), the encoder's states; lengths (B,).
    Returns (pooled (B, F), cache for pool_backward).
    """
    T = out.shape[0]
    if cfg.pool == "last":
        rows = final_steps(cfg, lengths)  # (B, F): the step each feature is read at
        return read_steps(out, rows), ("last", out.shape, rows)
    real = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]  # (T, B, 1)
    if cfg.pool == "mean":
        counts = lengths.astype(out.dtype)[:, None]  # (B, 1)
        return (out * real).sum(axis=0) / counts, ("mean", out.shape, real, counts)
    masked = np.where(real, out, -np.inf)
    rows = masked.argmax(axis=0)  # (B, F): the step of each maximum
    return read_steps(out, rows), ("max", out.shape, rows)


def pool_backward(dpooled, cache):
    """Gradient of the states (T, B, F) from that of the pooled vectors (B, F); zero at padding."""
    kind, shape = cache[0], cache[1]
    if kind == "mean":
        _, _, real, counts = cache
        return np.broadcast_to(dpooled / counts, shape) * real  # d a<t> = d pooled / n for t <= n
    return read_steps_backward(dpooled, shape, cache[2])  # routed to the step that was read


def loss_and_grads(params, cfg: ModelConfig, x, y, lengths, *, weights=None, rng=None, workspace=None):
    """Mean cross-entropy of the texts' labels (weighted by `weights`) and its exact gradients.

    Inputs:
    - x: input ids, of shape (T, B), padded past each text's length with any valid id
    - y: label ids, of shape (B,)
    - lengths: real steps of each text, of shape (B,), each in [1, T]
    - weights: optional per-text weights (B,) (e.g. inverse label frequency); None weighs texts equally
    - rng: np.random.Generator driving dropout (required when cfg.dropout > 0)

    Returns (loss, grads): the loss a Python float; grads keyed exactly like params.
    """
    x, y, lengths = _check_inputs(params, cfg, x, y, lengths)
    if cfg.dropout > 0 and not isinstance(rng, np.random.Generator):
        raise ConfigError("dropout > 0 needs an rng (np.random.Generator) to draw its masks")
    out, _, enc_cache = encoder_forward(params, cfg, x, init_state(cfg, x.shape[1]), lengths=lengths, rng=rng,
                                        ws=workspace)
    pooled, pool_cache = pool_forward(out, lengths, cfg)  # (B, F)
    logits, head_cache = layers.affine_forward(pooled[None], params["head.0.W"], params["head.0.b"])  # (1, B, K)
    loss, _, nll_cache = layers.softmax_nll_forward(logits[0], y, weights)
    grads = {}
    dlogits = layers.softmax_nll_backward(nll_cache)  # (B, K)
    dpooled, grads["head.0.W"], grads["head.0.b"] = layers.affine_backward(dlogits[None], head_cache)
    encoder_backward(cfg, pool_backward(dpooled[0], pool_cache), enc_cache, grads)  # d states, padding zero
    return loss, grads


def predict(params, cfg: ModelConfig, x, lengths):
    """Label probabilities of each text, of shape (B, K) float64 (evaluation: no dropout)."""
    x, _, lengths = _check_inputs(params, cfg, x, None, lengths)

    def block(rows, _):  # the texts `rows`, forward only, read to the longest of them
        n = lengths[rows]
        out, _ = encoder_infer(params, cfg, x[:n.max(), rows], init_state(cfg, len(n)), lengths=n)
        pooled, _ = pool_forward(out, n, cfg)
        logits, _ = layers.affine_forward(pooled[None], params["head.0.W"], params["head.0.b"])
        return layers.softmax(logits[0])

    return np.concatenate(map_row_blocks(block, x.shape[1]))


def _check_config(cfg) -> None:
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if not cfg.pool:
        raise ConfigError("this model has no pooling: it is not a classifier")


def _check_inputs(params, cfg, x, y, lengths):
    _check_config(cfg)
    check_params(params, param_shapes(cfg), np.dtype(cfg.dtype))
    x = check_ids(x, "x", cfg.vocab_size)
    T, B = x.shape
    lengths = check_lengths(lengths, T, B)
    if y is not None:
        y = np.asarray(y)
        if y.shape != (B,) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= cfg.heads[0]:
            raise ConfigError(f"labels must be {B} ints in [0, {cfg.heads[0]}), got shape {y.shape}")
    return x, y, lengths


def gradcheck_case(params, cfg: ModelConfig, rng: np.random.Generator, *, seq_len: int, batch: int, seed: int):
    """Random inputs for `charlm.models.gradcheck.check_model`: texts of random lengths up to seq_len (the first
    that long) with random labels and loss weights. -> (run, state []), run() giving (loss, grads, no dstate)."""
    x = rng.integers(0, cfg.vocab_size, (seq_len, batch))
    lengths = rng.integers(1, seq_len + 1, batch)
    lengths[0] = seq_len
    y = rng.integers(0, cfg.heads[0], batch)
    weights = rng.uniform(0.5, 2.0, batch)

    def run():
        loss, grads = loss_and_grads(params, cfg, x, y, lengths, weights=weights, rng=np.random.default_rng(seed + 1))
        return loss, grads, []

    return run, []
