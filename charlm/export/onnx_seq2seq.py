"""An encoder–decoder (`charlm.models.seq2seq`) as two standard ONNX graphs (opset 17): the encoder, run once per
batch of sources, and one decoder step, run by the caller's own search (greedy, beam, sampling) once per target
token. The recurrent layers are `charlm.export.onnx_graph`'s (one ONNX LSTM / GRU / RNN node per layer, the
decoder's with T = 1); attention is made of basic operators (MatMul, Softmax, Tanh, Where).

Letters: S source steps, B batch (rows: sources, or beams and samples of them), F the encoder's output width (H,
or 2H bidirectional), H hidden, A the additive score's width (= H), L layers, U the target vocabulary.

The contract (docs/export.md), every float float32:
- encoder: inputs `src` int64 (S, B), time-major, padded past each source's length with any valid id, and
  `src_lengths` int64 (B,) in [1, S]; outputs `memory` (S, B, F), the encoder's top layer (zero past each
  source's length), and `state_h` (and `state_c` for an LSTM) (L, B, H), the decoder's initial state from the
  bridge: tanh(summary bridge.W + bridge.b), summary (B, F) each direction's final output (the forward
  direction's at the source's last step, the reverse one's at its first).
- decoder step: inputs `ids` int64 (B,), each row's previous target token (`<EOS>`, id 0, at the start), `h0`
  (and `c0`) (L, B, H), `memory` (S, B, F) and `src_lengths` (B,), the encoder's (its rows repeated as the
  caller repeats a source); outputs `log_probs` (B, U), log P(next target token), `hn` (and `cn`) (L, B, H) to
  feed back as `h0` (`c0`), and with attention `attention` (B, S), α over the source (0 past its length).

Attention (the decoder's top state q (B, H), the memory batch-major e (B, S, F)): score = q · e<s> (dot),
(q att.W^T) · e<s> (general: q · (e<s> att.W) with the product taken on the query's side, so a step costs no
S x F x H projection), att.v · tanh(q att.Wq + e<s> att.Wk + att.b) (additive); α = Softmax of the scores with
the steps past each source's length set to -inf (so exactly 0, as charlm masks them); context = Σ_s α e<s>;
h̃ = tanh([context; q] att.out.W + att.out.b), which the head reads (q itself without attention).
"""

import numpy as np

from charlm.engine.cells import STATE_ARRAYS
from charlm.export.onnx_graph import Graph, affine, finish_model, input_layer, last_states, recurrent_layer
from charlm.models.config import ModelConfig
from charlm.models.encoder import output_width
from charlm.models.seq2seq import DECODER, decoder_config

STATES_IN, STATES_OUT, STARTS = ("h0", "c0"), ("hn", "cn"), ("state_h", "state_c")


def build_encoder(onnx, params: dict, cfg: ModelConfig, metadata: dict[str, str]):
    """The encoder graph as an `onnx.ModelProto` (checked): src (S, B), src_lengths (B,) -> memory (S, B, F),
    state_h (and state_c) (L, B, H). metadata: string properties stored in `metadata_props`."""
    g = Graph(onnx)
    FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    F, H, L, K = output_width(cfg), cfg.hidden, cfg.layers, STATE_ARRAYS[cfg.cell]
    g.inputs.append(g.value("src", INT64, ["S", "B"], "source ids (S, B), time-major, padded past each length"))
    g.inputs.append(g.value("src_lengths", INT64, ["B"], "each source's real steps (B,), in [1, S]"))
    x = input_layer(g, params, cfg, "src")  # (S, B, E or V)
    sequence_lens = g.op("Cast", ["src_lengths"], to=onnx.TensorProto.INT32)
    for layer in range(L):
        x, top_finals = recurrent_layer(g, params, cfg, layer, x, sequence_lens, [])
    g.op("Identity", [x], ["memory"])
    g.outputs.append(g.value("memory", FLOAT, ["S", "B", F], "the encoder's top layer (S, B, F)"))
    summary = last_states(g, top_finals[0], "summary")  # (B, F)
    bridge_W = g.constant("bridge.W", params["bridge.W"].astype(np.float32))
    start = g.op("Tanh", [affine(g, summary, bridge_W, params["bridge.b"], tag="bridge")])  # (B, L*K*H)
    # s0's columns are layer-major, then state array, then unit: (B, L, K, H) -> (K, L, B, H)
    arrays = g.op("Transpose", [g.op("Reshape", [start, g.constant("bridge.shape", np.array([0, L, K, H]))])],
                  perm=[2, 1, 0, 3])
    for k, name in enumerate(STARTS[:K]):
        g.op("Gather", [arrays, g.constant(f"bridge.array_{k}", np.array(k))], [name], axis=0)
        g.outputs.append(g.value(name, FLOAT, [L, "B", H], "the decoder's initial state (L, B, H)"))
    return finish_model(g, "charlm_seq2seq_encoder", metadata)


def build_decoder(onnx, params: dict, cfg: ModelConfig, metadata: dict[str, str]):
    """The decoder step graph as an `onnx.ModelProto` (checked): ids (B,), h0 (and c0) (L, B, H), memory
    (S, B, F), src_lengths (B,) -> log_probs (B, U), hn (and cn) (L, B, H), attention (B, S) with attention."""
    g = Graph(onnx)
    FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    F, H, L, K, U = output_width(cfg), cfg.hidden, cfg.layers, STATE_ARRAYS[cfg.cell], cfg.target_vocab
    dec_cfg = decoder_config(cfg)
    g.inputs.append(g.value("ids", INT64, ["B"], "each row's previous target token (B,); <EOS> (0) at the start"))
    for name in STATES_IN[:K]:
        g.inputs.append(g.value(name, FLOAT, [L, "B", H], "the decoder's state (L, B, H)"))
    g.inputs.append(g.value("memory", FLOAT, ["S", "B", F], "the encoder's memory (S, B, F)"))
    g.inputs.append(g.value("src_lengths", INT64, ["B"], "each source's real steps (B,), in [1, S]"))
    x = input_layer(g, params, dec_cfg, g.op("Unsqueeze", ["ids", g.constant("dec.time_axis", np.array([0]))]),
                    prefix=DECODER)  # (1, B, E or U)
    finals = []
    for layer in range(L):
        x, layer_finals = recurrent_layer(g, params, dec_cfg, layer, x, "", list(STATES_IN[:K]), prefix=DECODER)
        finals.append(layer_finals)
    top = g.op("Squeeze", [x, g.constant("dec.step_axis", np.array([0]))])  # (B, H)
    if cfg.attention != "none":
        top = _attend(g, params, cfg, top)
    logits = affine(g, top, g.constant("head.W", params["head.W"].astype(np.float32)), params["head.b"])
    g.op("LogSoftmax", [logits], ["log_probs"], axis=-1)
    g.outputs.append(g.value("log_probs", FLOAT, ["B", U], "log P(next target token) (B, U)"))
    for k, name in enumerate(STATES_OUT[:K]):
        g.op("Concat", [layer_finals[k] for layer_finals in finals], [name], axis=0)
        g.outputs.append(g.value(name, FLOAT, [L, "B", H], "the decoder's state after this step (L, B, H)"))
    if cfg.attention != "none":
        g.outputs.append(g.value("attention", FLOAT, ["B", "S"], "α over the source's steps (B, S)"))
    return finish_model(g, "charlm_seq2seq_decoder", metadata)


def _attend(g: Graph, params, cfg: ModelConfig, q: str) -> str:
    """q (B, H), the decoder's top state -> h̃ (B, H); α (B, S) is the node output named `attention`."""
    states = g.op("Transpose", ["memory"], perm=[1, 0, 2])  # (B, S, F)
    source_axis = g.constant("att.source_axis", np.array([1]))
    if cfg.attention == "additive":
        keys = g.op("MatMul", [states, g.constant("att.Wk", params["att.Wk"].astype(np.float32))])  # (B, S, A)
        query = g.op("MatMul", [q, g.constant("att.Wq", params["att.Wq"].astype(np.float32))])  # (B, A)
        query = g.op("Unsqueeze", [query, source_axis])  # (B, 1, A)
        u = g.op("Tanh", [g.op("Add", [g.op("Add", [keys, query]),
                                       g.constant("att.b", params["att.b"].astype(np.float32))])])
        scores = g.op("MatMul", [u, g.constant("att.v", params["att.v"].astype(np.float32))])  # (B, S)
    else:
        query = q  # dot: F == H
        if cfg.attention == "general":
            W_transposed = params["att.W"].T.astype(np.float32)  # (H, F)
            query = g.op("MatMul", [q, g.constant("att.W_transposed", W_transposed)])  # (B, F)
        column_axis = g.constant("att.column_axis", np.array([2]))
        column = g.op("Unsqueeze", [query, column_axis])  # (B, F, 1)
        scores = g.op("Squeeze", [g.op("MatMul", [states, column]), column_axis])  # (B, S)
    steps = g.op("Range", [g.constant("att.zero", np.array(0)),
                           g.op("Squeeze", [g.op("Shape", ["memory"], start=0, end=1)]),
                           g.constant("att.one", np.array(1))])  # (S,)
    real = g.op("Less", [g.op("Unsqueeze", [steps, g.constant("att.row_axis", np.array([0]))]),
                         g.op("Unsqueeze", ["src_lengths", source_axis])])  # (B, S): step s < length
    masked = g.op("Where", [real, scores, g.constant("att.minus_inf", np.array(-np.inf, np.float32))])
    alpha = g.op("Softmax", [masked], ["attention"], axis=-1)  # exp(-inf) = 0 past each source's length
    weights = g.op("Unsqueeze", [alpha, source_axis])  # (B, 1, S)
    context = g.op("Squeeze", [g.op("MatMul", [weights, states]), source_axis])  # (B, F)
    joined = g.op("Concat", [context, q], axis=1)  # [context; q], (B, F + H)
    out_W = g.constant("att.out.W", params["att.out.W"].astype(np.float32))
    return g.op("Tanh", [affine(g, joined, out_W, params["att.out.b"], tag="att.out")])
