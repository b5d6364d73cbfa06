"""The tagger: the recurrent encoder (`charlm.models.encoder`, usually bidirectional) and one or more tagging
heads, each an affine F -> K_k layer whose softmax gives a label at every step (many-to-many, Tx = Ty).

Letters: T time (the longest document of the batch), B batch (documents), F the encoder's output width
(H, or 2H bidirectional), K_k the labels of head k.

Parameters: the encoder's, then per head k `head.<k>.W` (F, K_k) and `head.<k>.b` (K_k,). Documents are
read whole from the zero state; a batch pads them to T and `lengths` (B,) says where each ends. Labels are
(T, B) ints per head, -1 where that head has no label (padding, or a position the task does not label).
The loss is the sum over heads of each head's mean negative log-likelihood over its labelled positions.
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
    encoder_param_shapes,
    init_state,
    init_weights,
    output_width,
)
from charlm.models.inference import encoder_infer

NO_LABEL = -1


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in a fixed order: the encoder's, then each head's."""
    shapes = encoder_param_shapes(cfg)
    for k, labels in enumerate(cfg.heads):
        shapes[f"head.{k}.W"] = (output_width(cfg), labels)
        shapes[f"head.{k}.b"] = (labels,)
    return shapes


def init_params(cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh parameters in cfg.dtype, drawn in param_shapes order (see `charlm.models.encoder.init_weights`)."""
    _check_config(cfg)
    return init_weights(cfg, param_shapes(cfg), rng)


def loss_and_grads(params, cfg: ModelConfig, x, labels, lengths, *, rng=None, workspace=None):
    """The summed mean cross-entropy of every head over a batch of documents, and its exact gradients.

    Inputs:
    - x: input ids, of shape (T, B), padded past each document's length with any valid id
    - labels: one (T, B) int array per head, NO_LABEL where the head has nothing to learn
    - lengths: real steps of each document, of shape (B,), each in [1, T]
    - rng: np.random.Generator driving dropout (required when cfg.dropout > 0)
    - workspace: optional dict of reusable buffers

    Returns (loss, grads): the loss a Python float; grads keyed exactly like params. A head with no
    labelled position in the batch adds nothing.
    """
    x, labels, lengths = _check_inputs(params, cfg, x, labels, lengths)
    if cfg.dropout > 0 and not isinstance(rng, np.random.Generator):
        raise ConfigError("dropout > 0 needs an rng (np.random.Generator) to draw its masks")
    T, B = x.shape
    out, _, enc_cache = encoder_forward(params, cfg, x, init_state(cfg, B), lengths=lengths, rng=rng,
                                        ws=workspace)
    grads, total = {}, 0.0
    dout = np.zeros_like(out)  # (T, B, F): the heads' gradients add up here
    for k, y in enumerate(labels):
        tag = f"head.{k}."
        logits, cache = layers.affine_forward(out, params[tag + "W"], params[tag + "b"])  # (T, B, K)
        weights = (y >= 0).reshape(-1).astype(np.float64)
        if not weights.any():
            grads[tag + "W"], grads[tag + "b"] = np.zeros_like(params[tag + "W"]), np.zeros_like(params[tag + "b"])
            continue
        loss, _, nll_cache = layers.softmax_nll_forward(logits.reshape(T * B, -1), np.maximum(y, 0).reshape(-1),
                                                        weights)
        total += loss
        dlogits = layers.softmax_nll_backward(nll_cache).reshape(T, B, -1)  # dL/dlogits, 0 where unlabelled
        d, grads[tag + "W"], grads[tag + "b"] = layers.affine_backward(dlogits, cache)  # d = dlogits W^T
        dout += d
    encoder_backward(cfg, dout, enc_cache, grads)
    return total, grads


def predict(params, cfg: ModelConfig, x, lengths):
    """Every head's label probabilities at every step (evaluation: no dropout).

    Inputs: x (T, B) and lengths (B,) as loss_and_grads.
    Returns a list with one (T, B, K_k) float64 array per head (rows past a document's length are padding).
    """
    x, _, lengths = _check_inputs(params, cfg, x, None, lengths)

    def block(rows, _):  # the documents `rows`, forward only
        n = lengths[rows]
        out, _ = encoder_infer(params, cfg, x[:, rows], init_state(cfg, len(n)), lengths=n)
        return [layers.softmax(layers.affine_forward(out, params[f"head.{k}.W"], params[f"head.{k}.b"])[0])
                for k in range(len(cfg.heads))]

    parts = map_row_blocks(block, x.shape[1])
    return [np.concatenate([heads[k] for heads in parts], axis=1) for k in range(len(cfg.heads))]


def _check_config(cfg) -> None:
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if not cfg.heads or cfg.pool:
        raise ConfigError("this model has no tagging heads (it is a language model or a classifier)")


def _check_inputs(params, cfg, x, labels, lengths):
    _check_config(cfg)
    check_params(params, param_shapes(cfg), np.dtype(cfg.dtype))
    x = check_ids(x, "x", cfg.vocab_size)
    T, B = x.shape
    lengths = check_lengths(lengths, T, B)
    if labels is not None:
        if len(labels) != len(cfg.heads):
            raise ConfigError(f"the model has {len(cfg.heads)} head(s), got labels for {len(labels)}")
        checked = []
        for k, (y, size) in enumerate(zip(labels, cfg.heads, strict=True)):
            y = np.asarray(y)
            if y.shape != (T, B) or not np.issubdtype(y.dtype, np.integer) or y.min() < NO_LABEL \
                    or y.max() >= size:
                raise ConfigError(f"labels of head {k} must be (T, B) = {(T, B)} ints in [-1, {size}), got "
                                  f"shape {y.shape}")
            checked.append(y)
        labels = checked
    return x, labels, lengths


def gradcheck_case(params, cfg: ModelConfig, rng: np.random.Generator, *, seq_len: int, batch: int, seed: int):
    """Random inputs for `charlm.models.gradcheck.check_model`: documents of random lengths up to seq_len (the
    first that long) from the zero state, with random labels that leave some positions unlabelled.
    -> (run, state []), run() giving (loss, grads, no dstate)."""
    x = rng.integers(0, cfg.vocab_size, (seq_len, batch))
    lengths = rng.integers(1, seq_len + 1, batch)
    lengths[0] = seq_len
    unlabelled = (np.arange(seq_len)[:, None] >= lengths[None, :]) | (rng.random((seq_len, batch)) < 0.2)
    labels = [np.where(unlabelled, NO_LABEL, rng.integers(0, k, (seq_len, batch))) for k in cfg.heads]

    def run():
        loss, grads = loss_and_grads(params, cfg, x, labels, lengths, rng=np.random.default_rng(seed + 1))
        return loss, grads, []

    return run, []
