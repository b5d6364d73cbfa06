"""A language model, a tagger or a classifier as a standard ONNX graph (opset 17), built with onnx's own helpers
and ONNX's own recurrent operators: one `LSTM`, `GRU` or `RNN` node per layer.

Letters: T time, B batch, V vocabulary, E embedding width, H hidden, F = H or 2H (bidirectional), L layers,
K labels of a head.

The contract (docs/export.md), every float float32:
- input `ids` int64 (T, B), time-major as charlm; T and B are dynamic.
- language model: optional inputs `h0` and, for an LSTM, `c0`, each (L, B, H), the state to start from (zeros
  when absent: each is also an initializer of zeros (L, 1, H), expanded to (L, B, H)); outputs `log_probs`
  (T, B, V), log P(next token | the tokens so far), and `hn`, `cn` (L, B, H), the state after step T (feed them
  back as `h0`, `c0` to go on, one token or a chunk at a time).
- tagger and classifier: a required input `lengths` int64 (B,), each document's real steps in [1, T] (the
  recurrent nodes' `sequence_lens`; the reverse direction starts at each document's last real step). A tagger
  outputs `log_probs` (T, B, K), or with several heads `log_probs_<k>` per head k (rows past a document's length
  are padding); a classifier `log_probs` (B, K), after its pooling (last, mean or max over the real steps).

The cells map onto ONNX's operators as `charlm.export.gates` describes: LSTM gates [i, o, f, c] = [Γu, Γo, Γf,
c~]; GRU [z, r, h] with z = 1 - Γu (u's weights and bias negated) and linear_before_reset=0, the lecture's
reset before the product. gru-simple (no reset gate: c~ = tanh(c<t-1> Wh_c + x Wx_c + b_c)) is ONNX's GRU with
the reset gate pinned open: its r rows of W and R are zero and its r bias is 40 (`gates.PINNED_OPEN`), and
σ(40) is exactly 1.0 in float32, so (r * c<t-1>) R_h = c<t-1> R_h exactly. rnn is `RNN` with the activation
Tanh or Relu. charlm's b is each node's input bias, the recurrent bias is zero.

The input layer is a Gather of `embed.W`'s rows, or with one-hot input a OneHot of depth V (never a dense
(V, V) table). A bidirectional layer's Y (T, 2, B, H) becomes (T, B, 2H), forward half first, as charlm
concatenates. Dropout is absent (inference). A tied head multiplies by `embed.W` transposed (one copy of the
table in the file).

`Graph`, `input_layer`, `recurrent_layer`, `affine`, `last_states` and `finish_model` are shared with the
encoder–decoder's graphs (`charlm.export.onnx_seq2seq`).
"""

import numpy as np

from charlm import __version__
from charlm.export.gates import gate_rows
from charlm.models.config import ModelConfig
from charlm.models.encoder import directions

OPSET = 17
# The IR version that came with opset 17 (onnx 1.12): the oldest a reader must understand to load the file.
IR_VERSION = 8
OPERATORS = {"rnn": "RNN", "gru-simple": "GRU", "gru": "GRU", "lstm": "LSTM"}


class Graph:
    """Nodes, initializers, inputs and outputs as they are added; each op returns its outputs' names."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []

    def constant(self, name: str, array) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs, outputs=1, **attrs):
        """Add a node; `outputs` is a count (names made up) or a list of names. Returns the one output's name,
        or the list when there are several."""
        if isinstance(outputs, int):
            outputs = [f"{op_type.lower()}_{len(self.nodes)}_{k}" for k in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outputs, name=f"{op_type}_{len(self.nodes)}",
                                                **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def value(self, name: str, elem_type, shape, doc: str):
        return self.helper.make_tensor_value_info(name, elem_type, shape, doc)


def build_model(onnx, params: dict, cfg: ModelConfig, metadata: dict[str, str]):
    """The model as an `onnx.ModelProto` (checked by `onnx.checker`).

    Inputs: onnx, the imported package (an optional dependency, imported by the caller); params and cfg of a
    language model, tagger or classifier; metadata, string properties stored in `metadata_props`.
    """
    g = Graph(onnx)
    FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    V, H, L = cfg.vocab_size, cfg.hidden, cfg.layers
    g.inputs.append(g.value("ids", INT64, ["T", "B"], "token ids (T, B), time-major"))
    x = input_layer(g, params, cfg, "ids")  # (T, B, E or V)
    states, sequence_lens = [], ""
    if cfg.kind == "lm":
        states = _state_inputs(g, cfg)
    else:
        g.inputs.append(g.value("lengths", INT64, ["B"], "each document's real steps (B,), in [1, T]"))
        sequence_lens = g.op("Cast", ["lengths"], to=onnx.TensorProto.INT32)
    finals = []
    for layer in range(L):
        x, layer_finals = recurrent_layer(g, params, cfg, layer, x, sequence_lens, states)
        finals.append(layer_finals)
    if cfg.kind == "lm":
        logits = affine(g, x, _lm_head_weight(g, params, cfg), params["head.b"])
        g.op("LogSoftmax", [logits], ["log_probs"], axis=-1)
        g.outputs.append(g.value("log_probs", FLOAT, ["T", "B", V], "log P(next token | tokens so far) (T, B, V)"))
        for k, name in enumerate(("hn", "cn")[:len(states)]):
            g.op("Concat", [layer_finals[k] for layer_finals in finals], [name], axis=0)
            g.outputs.append(g.value(name, FLOAT, [L, "B", H], "the state after step T (L, B, H)"))
    elif cfg.kind == "tagger":
        for k, labels in enumerate(cfg.heads):
            name = "log_probs" if len(cfg.heads) == 1 else f"log_probs_{k}"
            logits = affine(g, x, g.constant(f"head.{k}.W", params[f"head.{k}.W"].astype(np.float32)),
                            params[f"head.{k}.b"], tag=f"head.{k}")
            g.op("LogSoftmax", [logits], [name], axis=-1)
            g.outputs.append(g.value(name, FLOAT, ["T", "B", labels], f"head {k}: log P(label) per step (T, B, K)"))
    else:
        pooled = _pool(g, cfg, x, finals[-1][0])  # (B, F)
        logits = affine(g, pooled, g.constant("head.0.W", params["head.0.W"].astype(np.float32)),
                        params["head.0.b"], tag="head.0")
        g.op("LogSoftmax", [logits], ["log_probs"], axis=-1)
        g.outputs.append(g.value("log_probs", FLOAT, ["B", cfg.heads[0]], "log P(label) per document (B, K)"))
    return finish_model(g, f"charlm_{cfg.kind}", metadata)


def finish_model(g: Graph, name: str, metadata: dict[str, str]):
    """The graph of g as an `onnx.ModelProto` (opset 17, IR version 8) with string metadata in
    `metadata_props`, checked by `onnx.checker`."""
    helper = g.helper
    graph = helper.make_graph(g.nodes, name, g.inputs, g.outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="charlm",
                              producer_version=__version__, ir_version=IR_VERSION)
    helper.set_model_props(model, metadata)
    g.onnx.checker.check_model(model)
    return model


def _state_inputs(g: Graph, cfg: ModelConfig) -> list[str]:
    """A language model's inputs h0 (and c0), each (L, B, H) with a default of zeros (L, 1, H), expanded to the
    batch of `ids`. Returns the expanded states."""
    L, H = cfg.layers, cfg.hidden
    batch = g.op("Shape", ["ids"], start=1, end=2)  # [B]
    states = []
    for name in ("h0", "c0")[:2 if cfg.cell == "lstm" else 1]:
        g.inputs.append(g.value(name, g.onnx.TensorProto.FLOAT, [L, "B", H],
                                "the state to start from (L, B, H); zeros when absent"))
        g.constant(name, np.zeros((L, 1, H), np.float32))  # the default: an initializer of the input's name
        shape = g.op("Concat", [g.constant(f"{name}.layers", np.array([L])), batch,
                                g.constant(f"{name}.hidden", np.array([H]))], axis=0)
        states.append(g.op("Expand", [name, shape]))  # (L, B, H)
    return states


def input_layer(g: Graph, params, cfg: ModelConfig, ids: str, prefix: str = "") -> str:
    """ids (T, B) -> the first layer's input (T, B, E): embed.W's rows; or one-hot (T, B, V). prefix: the
    network's parameter names' ("dec." for an encoder–decoder's decoder), its constants' too."""
    if cfg.embed:
        table = g.constant(f"{prefix}embed.W", params[f"{prefix}embed.W"].astype(np.float32))
        return g.op("Gather", [table, ids], axis=0)
    depth = g.constant(f"{prefix}vocab_size", np.array(cfg.vocab_size))
    values = g.constant(f"{prefix}one_hot_values", np.array([0.0, 1.0], np.float32))
    return g.op("OneHot", [ids, depth, values], axis=-1)


def recurrent_layer(g: Graph, params, cfg: ModelConfig, layer: int, x: str, sequence_lens: str, states: list,
                    prefix: str = ""):
    """One LSTM / GRU / RNN node over x (T, B, D): its features (T, B, F) and its final states [(dirs, B, H),
    ...] (Y_h, and Y_c for an LSTM). states: [] (zeros) or the (L, B, H) arrays to start from, whose row `layer`
    this layer reads (one direction). prefix: the network's parameter names' ("dec." for a decoder)."""
    tag = f"{prefix}layer.{layer}"
    rows = [gate_rows("onnx", cfg.cell, *(params[f"{tag}.{d}{k}"] for k in ("Wx", "Wh", "b")))
            for d in directions(cfg)]
    W = g.constant(f"{tag}.W", np.stack([w for w, _, _ in rows]))  # (dirs, G', D)
    R = g.constant(f"{tag}.R", np.stack([r for _, r, _ in rows]))  # (dirs, G', H)
    B = g.constant(f"{tag}.B", np.stack([np.concatenate([b, np.zeros_like(b)]) for _, _, b in rows]))  # (dirs, 2G')
    initial = []
    if states:
        bounds = [g.constant(f"{tag}.{name}", np.array([value])) for name, value in
                  (("start", layer), ("end", layer + 1), ("axis", 0))]
        initial = [g.op("Slice", [s, *bounds]) for s in states]  # this layer's (1, B, H) of each (L, B, H)
    attrs = {"hidden_size": cfg.hidden, "direction": "bidirectional" if cfg.bidirectional else "forward"}
    if cfg.cell in ("gru", "gru-simple"):
        attrs["linear_before_reset"] = 0
    if cfg.cell == "rnn":
        attrs["activations"] = [cfg.activation.capitalize()] * len(directions(cfg))
    n_outputs = 1 + (2 if cfg.cell == "lstm" else 1)  # Y, Y_h (, Y_c)
    outputs = g.op(OPERATORS[cfg.cell], [x, W, R, B, sequence_lens, *initial], n_outputs, **attrs)
    Y, finals = outputs[0], outputs[1:]
    if cfg.bidirectional:  # (T, 2, B, H) -> (T, B, 2, H) -> (T, B, 2H), the forward half first
        Y = g.op("Transpose", [Y], perm=[0, 2, 1, 3])
        return g.op("Reshape", [Y, g.constant(f"{tag}.features", np.array([0, 0, -1]))]), finals
    return g.op("Squeeze", [Y, g.constant(f"{tag}.direction_axis", np.array([1]))]), finals


def _lm_head_weight(g: Graph, params, cfg: ModelConfig) -> str:
    """The LM head's weight (H, V): head.W, or tied, embed.W (V, E) transposed (E == H)."""
    if cfg.tie:
        return g.op("Transpose", ["embed.W"], perm=[1, 0])
    return g.constant("head.W", params["head.W"].astype(np.float32))


def affine(g: Graph, x: str, W: str, b, tag: str = "head") -> str:
    """x (..., F) W (F, K) + b (K,)."""
    return g.op("Add", [g.op("MatMul", [x, W]), g.constant(f"{tag}.b", b.astype(np.float32))])


def _pool(g: Graph, cfg: ModelConfig, out: str, final_h: str) -> str:
    """A classifier's pooled vector (B, F) of the top layer's features out (T, B, F) over each document's real
    steps; final_h (dirs, B, H) is the top node's Y_h."""
    if cfg.pool == "last":
        return last_states(g, final_h, "pool")
    steps = g.op("Range", [g.constant("pool.zero", np.array(0)),
                           g.op("Squeeze", [g.op("Shape", ["ids"], start=0, end=1)]),
                           g.constant("pool.one", np.array(1))])  # (T,)
    real = g.op("Less", [g.op("Unsqueeze", [steps, g.constant("pool.column", np.array([1]))]),
                         "lengths"])  # (T, B): step t < length
    real = g.op("Unsqueeze", [real, g.constant("pool.feature_axis", np.array([2]))])  # (T, B, 1)
    if cfg.pool == "max":
        masked = g.op("Where", [real, out, g.constant("pool.minus_inf", np.array(-np.inf, np.float32))])
        return g.op("ReduceMax", [masked], axes=[0], keepdims=0)
    total = g.op("ReduceSum", [g.op("Mul", [out, g.op("Cast", [real], to=g.onnx.TensorProto.FLOAT)]),
                               g.constant("pool.time_axis", np.array([0]))], keepdims=0)  # (B, F)
    counts = g.op("Unsqueeze", [g.op("Cast", ["lengths"], to=g.onnx.TensorProto.FLOAT),
                                g.constant("pool.count_axis", np.array([1]))])  # (B, 1)
    return g.op("Div", [total, counts])


def last_states(g: Graph, final_h: str, tag: str) -> str:
    """A node's Y_h (dirs, B, H), run with sequence_lens, as each document's features (B, F), forward half
    first: the forward direction's state at step lengths-1, the reverse direction's at step 0."""
    per_document = g.op("Transpose", [final_h], perm=[1, 0, 2])  # (B, dirs, H)
    return g.op("Reshape", [per_document, g.constant(f"{tag}.shape", np.array([0, -1]))])
