"""The encoder–decoder (many-to-many with Tx ≠ Ty; one-to-many when every source is one token): the recurrent
encoder (`charlm.models.encoder`) reads the source, a bridge turns its final states into the decoder's initial
state, and a decoder of the same cell, width and depth writes the target one token at a time, reading the
previous target token (teacher forcing while training) and, with attention, every state of the encoder.

Letters: S source steps (the batch's longest source), T target steps, B batch, F the encoder's output width
(H, or 2H bidirectional), H hidden, A the additive score's width (= H), U the target vocabulary
(`cfg.target_vocab`), L layers, K state arrays per layer (2 for an LSTM, else 1).

Parameters, in param_shapes order:
- the encoder's, named as every model's (`embed.W`, `layer.<l>.[rev.]Wx/Wh/b`), reading source ids
- `bridge.W` (F, L*K*H), `bridge.b` (L*K*H,): every decoder layer's initial state arrays are
  tanh(summary bridge.W + bridge.b), summary (B, F) being each direction's final output (the forward
  direction's at the source's last step, the reverse one's at its first). Projected rather than copied, so both
  directions of a bidirectional encoder reach the decoder and every layer of the decoder gets its own start.
- the decoder's: `dec.` + an encoder's names (unidirectional), reading target ids
- attention: dot none; general `att.W` (F, H); additive `att.Wq` (H, A), `att.Wk` (F, A), `att.b` (A,),
  `att.v` (A,); and for any of them `att.out.W` (F + H, H), `att.out.b` (H,)
- `head.W` (H, U), `head.b` (U,)

A target is y<1..n> then `<EOS>`: the decoder reads `<EOS>` (as the start) then y<1..n> and learns to write
y<1..n> `<EOS>`. With attention, at decoder step t with top state h<t> (Luong et al. 2015):
  score<t,s> = h<t> · e<s> (dot) | h<t> · (e<s> att.W) (general)
             | att.v · tanh(h<t> att.Wq + e<s> att.Wk + att.b) (additive, Bahdanau et al. 2015)
  α<t,s> = softmax of score<t,.> over the source's real steps (padding gets α = 0 and so zero gradient)
  context<t> = Σ_s α<t,s> e<s>;   h̃<t> = tanh([context<t>; h<t>] att.out.W + att.out.b)
and the head reads h̃<t> (h<t> without attention). The loss is the mean negative log-likelihood of the batch's
real target tokens. Attention works batch-major, (B, T, S), so each product is one batched matmul.
"""

import functools
from dataclasses import dataclass

from charlm.engine import layers
from charlm.engine.backend import np
from charlm.engine.cells import STATE_ARRAYS
from charlm.errors import ConfigError
from charlm.models.config import ModelConfig
from charlm.models.encoder import (
    check_ids,
    check_lengths,
    check_params,
    encoder_backward,
    encoder_forward,
    encoder_param_shapes,
    final_steps,
    init_state,
    init_weights,
    output_width,
    read_steps,
    read_steps_backward,
)
from charlm.text.vocab import EOS

DECODER = "dec."


@functools.cache
def decoder_config(cfg: ModelConfig) -> ModelConfig:
    """The decoder's own stack as a network of its own: the model's cell, width, depth and embedding over the
    target vocabulary, one direction (built once per model: every step of decoding asks for it)."""
    return ModelConfig(cell=cfg.cell, vocab_size=cfg.target_vocab, hidden=cfg.hidden, layers=cfg.layers,
                       embed=cfg.embed, dropout=cfg.dropout, activation=cfg.activation, dtype=cfg.dtype)


def _attention_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    F, H = output_width(cfg), cfg.hidden
    shapes = {"general": {"att.W": (F, H)},
              "additive": {"att.Wq": (H, H), "att.Wk": (F, H), "att.b": (H,), "att.v": (H,)}}.get(cfg.attention, {})
    if cfg.attention != "none":
        shapes.update({"att.out.W": (F + H, H), "att.out.b": (H,)})
    return shapes


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in a fixed order (see the module docstring)."""
    H, state_width = cfg.hidden, cfg.layers * STATE_ARRAYS[cfg.cell] * cfg.hidden
    shapes = encoder_param_shapes(cfg)
    shapes.update({"bridge.W": (output_width(cfg), state_width), "bridge.b": (state_width,)})
    shapes.update({DECODER + k: v for k, v in encoder_param_shapes(decoder_config(cfg)).items()})
    shapes.update(_attention_shapes(cfg))
    shapes.update({"head.W": (H, cfg.target_vocab), "head.b": (cfg.target_vocab,)})
    return shapes


def init_params(cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh parameters in cfg.dtype, drawn in param_shapes order: the encoder and the decoder as
    `charlm.models.encoder.init_weights` draws any encoder; every other matrix uniform in ±1/sqrt(H) (as
    nn.Linear), biases zero."""
    _check_config(cfg)
    params = init_weights(cfg, encoder_param_shapes(cfg), rng)
    shapes = param_shapes(cfg)
    bound = 1.0 / np.sqrt(cfg.hidden)
    params["bridge.W"] = rng.uniform(-bound, bound, shapes["bridge.W"]).astype(cfg.dtype)
    params["bridge.b"] = np.zeros(shapes["bridge.b"], cfg.dtype)
    dec_cfg = decoder_config(cfg)
    params.update({DECODER + k: v for k, v in init_weights(dec_cfg, encoder_param_shapes(dec_cfg), rng).items()})
    rest = {**_attention_shapes(cfg), "head.W": shapes["head.W"], "head.b": shapes["head.b"]}
    for name, shape in rest.items():
        drawn = rng.uniform(-bound, bound, shape) if not name.endswith(".b") else np.zeros(shape)
        params[name] = drawn.astype(cfg.dtype)
    return {name: params[name] for name in shapes}


def _decoder_params(params) -> dict:
    return {k[len(DECODER):]: v for k, v in params.items() if k.startswith(DECODER)}


# ------------------------------------------------------------------------------------------------ bridge

def bridge_forward(params, cfg: ModelConfig, summary):
    """summary (B, F) -> the decoder's initial state (a list of L tuples of K (B, H) arrays) and a cache."""
    H, K = cfg.hidden, STATE_ARRAYS[cfg.cell]
    start = np.tanh(summary @ params["bridge.W"] + params["bridge.b"])  # s0 = tanh(summary W + b), (B, L*K*H)
    state = [tuple(np.ascontiguousarray(start[:, (layer * K + k) * H:(layer * K + k + 1) * H]) for k in range(K))
             for layer in range(cfg.layers)]
    return state, (summary, params["bridge.W"], start)


def bridge_backward(dstate, cache, grads):
    """dstate shaped like the state -> d summary (B, F); fills the bridge's gradients."""
    summary, W, start = cache
    dstart = np.concatenate([d for arrays in dstate for d in arrays], axis=1)  # (B, L*K*H), in s0's layout
    dstart *= 1.0 - start * start  # d pre = d s0 * (1 - s0²)
    grads["bridge.W"] = summary.T @ dstart  # dW = summary^T d pre
    grads["bridge.b"] = dstart.sum(axis=0)  # db = Σ_b d pre
    return dstart @ W.T  # d summary = d pre W^T


# --------------------------------------------------------------------------------------------- attention

@dataclass(frozen=True)
class Memory:
    """What the decoder reads of the encoded sources, batch-major: `states` (B, S, F) the encoder's outputs,
    `keys` (B, S, H) what a score multiplies (the states themselves for dot, states att.W for general, states
    att.Wk for additive; None without attention), `real` (B, S) whether a step is a real source token."""

    states: np.ndarray
    keys: np.ndarray | None
    real: np.ndarray

    def take(self, rows) -> "Memory":
        """The memory of sources `rows` (beams and samples repeat a source)."""
        return Memory(self.states[rows], None if self.keys is None else self.keys[rows], self.real[rows])


def _times(x, W):
    """x (B, N, D) times W (D, M) -> (B, N, M), as one (B * N, D) x (D, M) product: numpy runs a stacked
    operand as B small products, several times slower."""
    B, N, D = x.shape
    return (x.reshape(B * N, D) @ W).reshape(B, N, W.shape[1])


def memory_forward(params, cfg: ModelConfig, enc_out, src_lengths) -> Memory:
    """enc_out (S, B, F), src_lengths (B,) -> the Memory the attention reads."""
    states = np.ascontiguousarray(enc_out.transpose(1, 0, 2))  # (B, S, F)
    keys = {"none": None, "dot": states}.get(cfg.attention)
    if cfg.attention in ("general", "additive"):
        W = params["att.W" if cfg.attention == "general" else "att.Wk"]
        keys = _times(states, W)  # keys = e att.W (general), e att.Wk (additive)
    real = np.arange(states.shape[1])[None, :] < np.asarray(src_lengths)[:, None]
    return Memory(states, keys, real)


def _additive_scores(params, q, keys):
    """q (B, T, H), keys (B, S, A) -> (u = tanh(q Wq + e Wk + b) (B, T, S, A), scores = v · u (B, T, S)).
    float32 runs the fused kernel of `charlm.engine.fused`; float64 (the gradient checks) the exact numpy."""
    qp = _times(q, params["att.Wq"])  # (B, T, A)
    if q.dtype == np.float32:
        from charlm.engine import fused

        B, T, _ = q.shape
        u = np.empty((B, T, keys.shape[1], keys.shape[2]), np.float32)
        scores = np.empty(u.shape[:3], np.float32)
        fused.additive_forward(np.ascontiguousarray(qp), np.ascontiguousarray(keys), params["att.b"],
                               params["att.v"], u, scores)
        return u, scores
    u = np.tanh(qp[:, :, None, :] + keys[:, None, :, :] + params["att.b"])  # u = tanh(q Wq + e Wk + b)
    return u, u @ params["att.v"]  # score = v · u


def _additive_scores_backward(params, u, dscores, grads):
    """d scores (B, T, S) -> (d qp (B, T, A), d keys (B, S, A)); fills the gradients of att.v and att.b."""
    v = params["att.v"]
    if u.dtype == np.float32:
        from charlm.engine import fused

        B, T, S, A = u.shape
        dqp, dkeys = np.empty((B, T, A), np.float32), np.empty((B, S, A), np.float32)
        grads["att.v"], grads["att.b"] = np.empty(A, np.float32), np.empty(A, np.float32)
        fused.additive_backward(u, np.ascontiguousarray(dscores, np.float32), v, dqp, dkeys, grads["att.v"],
                                grads["att.b"])
        return dqp, dkeys
    grads["att.v"] = (dscores[..., None] * u).sum(axis=(0, 1, 2))  # d v = Σ d score * u
    dpre = dscores[..., None] * v * (1.0 - u * u)  # d pre = d score * v * (1 - u²)
    grads["att.b"] = dpre.sum(axis=(0, 1, 2))  # d b = Σ d pre
    return dpre.sum(axis=2), dpre.sum(axis=1)  # d qp = Σ_s d pre, d keys = Σ_t d pre


def attention_forward(params, cfg: ModelConfig, q, memory: Memory):
    """q (B, T, H), the decoder's top states -> (h̃ (B, T, H), α (B, T, S), cache for attention_backward)."""
    E, keys = memory.states, memory.keys
    u = None
    if cfg.attention == "additive":
        u, scores = _additive_scores(params, q, keys)
    else:
        scores = q @ keys.transpose(0, 2, 1)  # score = q · key
    scores = np.where(memory.real[:, None, :], scores, -np.inf)
    alpha = np.exp(scores - scores.max(axis=2, keepdims=True))
    alpha /= alpha.sum(axis=2, keepdims=True)  # α = softmax over real steps (exp(-inf) = 0 at padding)
    context = alpha @ E  # context = Σ_s α e<s>, (B, T, F)
    joined = np.concatenate([context, q], axis=2)  # [context; h], (B, T, F + H)
    z = np.tanh(_times(joined, params["att.out.W"]) + params["att.out.b"])  # h̃ = tanh([context; h] W + b)
    return z, alpha, (q, memory, u, alpha, joined, z)


def attention_backward(params, cfg: ModelConfig, dz, cache, grads):
    """dz (B, T, H) -> (dq (B, T, H), dE (B, S, F)); fills the attention's gradients."""
    q, memory, u, alpha, joined, z = cache
    E, keys = memory.states, memory.keys
    B, T, H = q.shape
    F = E.shape[2]
    dpre = dz * (1.0 - z * z)  # d pre = d h̃ * (1 - h̃²)
    grads["att.out.W"] = joined.reshape(B * T, F + H).T @ dpre.reshape(B * T, H)  # dW = [context; h]^T d pre
    grads["att.out.b"] = dpre.sum(axis=(0, 1))  # db = Σ d pre
    djoined = _times(dpre, params["att.out.W"].T)  # d [context; h] = d pre W^T
    dcontext, dq = djoined[:, :, :F], np.ascontiguousarray(djoined[:, :, F:])
    dalpha = dcontext @ E.transpose(0, 2, 1)  # d α = d context · e
    dE = alpha.transpose(0, 2, 1) @ dcontext  # d e<s> = Σ_t α<t,s> d context<t>
    dscores = alpha * (dalpha - (alpha * dalpha).sum(axis=2, keepdims=True))  # softmax backward; 0 at padding
    if cfg.attention == "additive":
        dqp, dkeys = _additive_scores_backward(params, u, dscores, grads)  # (B, T, A), (B, S, A)
        dq += _times(dqp, params["att.Wq"].T)  # d q += d qp Wq^T
        grads["att.Wq"] = q.reshape(B * T, H).T @ dqp.reshape(B * T, -1)  # d Wq = q^T d qp
    else:
        dq += dscores @ keys  # d q += d score key
        dkeys = dscores.transpose(0, 2, 1) @ q  # d key<s> = Σ_t d score<t,s> q<t>
    S = E.shape[1]
    if cfg.attention == "dot":
        dE += dkeys  # the keys are the states
    else:
        name = "att.W" if cfg.attention == "general" else "att.Wk"
        grads[name] = E.reshape(B * S, F).T @ dkeys.reshape(B * S, -1)  # dW = e^T d keys
        dE += _times(dkeys, params[name].T)  # d e += d keys W^T
    return dq, dE


# ---------------------------------------------------------------------------------------- whole model

def decoder_inputs(tgt) -> np.ndarray:
    """What the decoder reads (T, B): `<EOS>` as the start, then each target but the last."""
    return np.concatenate([np.full((1, tgt.shape[1]), EOS, tgt.dtype), tgt[:-1]])


def _forward(params, cfg, src, src_lengths, tgt, rng, ws):
    """Teacher-forced forward -> (logits (B, T, U), caches)."""
    enc_out, _, enc_cache = encoder_forward(params, cfg, src, init_state(cfg, src.shape[1]), lengths=src_lengths,
                                            rng=rng, ws=ws)  # (S, B, F)
    rows = final_steps(cfg, src_lengths)
    start, bridge_cache = bridge_forward(params, cfg, read_steps(enc_out, rows))
    dec_ws = None if ws is None else ws.setdefault("decoder", {})
    dec_out, _, dec_cache = encoder_forward(_decoder_params(params), decoder_config(cfg), decoder_inputs(tgt), start,
                                            rng=rng, ws=dec_ws)  # (T, B, H)
    q = np.ascontiguousarray(dec_out.transpose(1, 0, 2))  # (B, T, H)
    att_cache = None
    if cfg.attention != "none":
        memory = memory_forward(params, cfg, enc_out, src_lengths)
        q, _, att_cache = attention_forward(params, cfg, q, memory)
    logits, head_cache = layers.affine_forward(q, params["head.W"], params["head.b"])  # (B, T, U)
    return logits, (enc_out.shape, enc_cache, rows, bridge_cache, dec_cache, att_cache, head_cache)


def target_mask(tgt_lengths, T: int) -> np.ndarray:
    """(B, T) 1.0 at each target's real steps (its tokens and its `<EOS>`), 0.0 at padding."""
    return (np.arange(T)[None, :] < np.asarray(tgt_lengths)[:, None]).astype(np.float64)


def loss_and_grads(params, cfg: ModelConfig, src, src_lengths, tgt, tgt_lengths, *, rng=None, workspace=None):
    """Mean cross-entropy of the real target tokens, teacher-forced, and its exact gradients.

    Inputs:
    - src: source ids (S, B), padded past each source's length with any valid id; src_lengths (B,) in [1, S]
    - tgt: target ids (T, B), each target's tokens then `<EOS>`, padded with any valid id; tgt_lengths (B,)
      in [1, T], counting the `<EOS>`
    - rng: np.random.Generator driving dropout (required when cfg.dropout > 0)

    Returns (loss, grads): the loss a Python float; grads keyed exactly like params.
    """
    src, src_lengths, tgt, tgt_lengths = _check_inputs(params, cfg, src, src_lengths, tgt, tgt_lengths)
    if cfg.dropout > 0 and not isinstance(rng, np.random.Generator):
        raise ConfigError("dropout > 0 needs an rng (np.random.Generator) to draw its masks")
    logits, (enc_shape, enc_cache, rows, bridge_cache, dec_cache, att_cache, head_cache) = _forward(
        params, cfg, src, src_lengths, tgt, rng, workspace)
    B, T, U = logits.shape
    loss, _, nll_cache = layers.softmax_nll_forward(logits.reshape(B * T, U), tgt.T.reshape(-1),
                                                    target_mask(tgt_lengths, T).reshape(-1))
    grads = {}
    dlogits = layers.softmax_nll_backward(nll_cache).reshape(B, T, U)  # 0 at padding
    dq, grads["head.W"], grads["head.b"] = layers.affine_backward(dlogits, head_cache)
    d_enc = None
    if att_cache is not None:
        dq, dE = attention_backward(params, cfg, dq, att_cache, grads)
        d_enc = dE.transpose(1, 0, 2)  # (S, B, F)
    dec_grads = {}
    dstart = encoder_backward(decoder_config(cfg), np.ascontiguousarray(dq.transpose(1, 0, 2)), dec_cache, dec_grads)
    grads.update({DECODER + k: v for k, v in dec_grads.items()})
    dsummary = bridge_backward(dstart, bridge_cache, grads)
    d_final = read_steps_backward(dsummary, enc_shape, rows)  # the summary's steps only
    d_enc = d_final if d_enc is None else d_enc + d_final
    encoder_backward(cfg, np.ascontiguousarray(d_enc), enc_cache, grads)
    return loss, {name: grads[name] for name in params}


def sequence_nll(params, cfg: ModelConfig, src, src_lengths, tgt, tgt_lengths) -> np.ndarray:
    """Each target's teacher-forced negative log-likelihood in nats, its `<EOS>` included, (B,) float64
    (evaluation: no dropout)."""
    src, src_lengths, tgt, tgt_lengths = _check_inputs(params, cfg, src, src_lengths, tgt, tgt_lengths)
    logits, _ = _forward(params, cfg, src, src_lengths, tgt, None, None)
    B, T, U = logits.shape
    _, nll, _ = layers.softmax_nll_forward(logits.reshape(B * T, U), tgt.T.reshape(-1))
    return (nll.reshape(B, T) * target_mask(tgt_lengths, T)).sum(axis=1)


# ---------------------------------------------------------------------------------------------- decoding

def encode(params, cfg: ModelConfig, src, src_lengths):
    """Read B sources once for decoding -> (Memory, the decoder's initial state)."""
    src, src_lengths = _check_source(params, cfg, src, src_lengths)
    enc_out, _, _ = encoder_forward(params, cfg, src, init_state(cfg, src.shape[1]), lengths=src_lengths)
    start, _ = bridge_forward(params, cfg, read_steps(enc_out, final_steps(cfg, src_lengths)))
    return memory_forward(params, cfg, enc_out, src_lengths), start


def decode_step(params, cfg: ModelConfig, memory: Memory, ids, state):
    """Advance B decoders by one token each -> (logits (B, U), the new state, α (B, S) or None without
    attention). ids (B,): each decoder's previous output (`<EOS>` at the start)."""
    out, new_state, _ = encoder_forward(_decoder_params(params), decoder_config(cfg), np.asarray(ids)[None, :],
                                        state)
    q = out.transpose(1, 0, 2)  # (B, 1, H)
    alpha = None
    if cfg.attention != "none":
        q, alpha, _ = attention_forward(params, cfg, q, memory)
        alpha = alpha[:, 0]
    logits, _ = layers.affine_forward(q, params["head.W"], params["head.b"])
    return logits[:, 0], new_state, alpha


# -------------------------------------------------------------------------------------------- validation

def _check_config(cfg) -> None:
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if cfg.kind != "seq2seq":
        raise ConfigError(f"this model is a {cfg.kind}, not an encoder–decoder")


def _check_source(params, cfg, src, src_lengths):
    _check_config(cfg)
    check_params(params, param_shapes(cfg), np.dtype(cfg.dtype))
    src = check_ids(src, "source", cfg.vocab_size)
    return src, check_lengths(src_lengths, *src.shape)


def _check_inputs(params, cfg, src, src_lengths, tgt, tgt_lengths):
    src, src_lengths = _check_source(params, cfg, src, src_lengths)
    tgt = check_ids(tgt, "target", cfg.target_vocab)
    if tgt.shape[1] != src.shape[1]:
        raise ConfigError(f"source and target batches differ: {src.shape[1]} and {tgt.shape[1]}")
    return src, src_lengths, tgt, check_lengths(tgt_lengths, *tgt.shape)


def gradcheck_case(params, cfg: ModelConfig, rng: np.random.Generator, *, seq_len: int, batch: int, seed: int):
    """Random pairs for `charlm.models.gradcheck.check_model`: sources of random lengths up to seq_len and
    targets up to seq_len + 1 (the first of each that long). -> (run, state []), run() giving (loss, grads,
    no dstate)."""
    src = rng.integers(0, cfg.vocab_size, (seq_len, batch))
    tgt = rng.integers(0, cfg.target_vocab, (seq_len + 1, batch))
    src_lengths, tgt_lengths = rng.integers(1, seq_len + 1, batch), rng.integers(1, seq_len + 2, batch)
    src_lengths[0], tgt_lengths[0] = seq_len, seq_len + 1

    def run():
        loss, grads = loss_and_grads(params, cfg, src, src_lengths, tgt, tgt_lengths,
                                     rng=np.random.default_rng(seed + 1))
        return loss, grads, []

    return run, []
