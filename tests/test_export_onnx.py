"""`charlm export --format onnx`, checked not trusted: the graph of every cell, layer count, direction, pooling
and input layer runs in onnxruntime on random ids (and random or default states) and matches charlm's own
forward to 1e-4; its metadata, its operators and the example of docs/export.md are checked too."""

import json

import numpy as np
import onnx  # the dev extra: the tests need the real runtime, never a skip
import pytest
from onnx_runs import docs_example, run, session_of, stacked
from reference import log_softmax

from charlm.export.exporting import export_model
from charlm.export.gates import PINNED_OPEN
from charlm.models import classifier, lm, tagger
from charlm.models.config import ModelConfig
from charlm.models.encoder import init_state
from charlm.store.checkpoint import save_checkpoint
from charlm.text.tokenizer import Vocab

VOCAB = Vocab.build({c: 1 for c in "abcdefghi"})  # V = 11
V = VOCAB.size
TOLERANCE = 1e-4
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("gru-simple", "tanh"), ("lstm", "tanh")]
CELL_IDS = ["rnn-tanh", "rnn-relu", "gru", "gru-simple", "lstm"]
TAGGING = {"task": "tag", "heads": [{"name": "pos", "labels": ["N", "V", "X"]},
                                    {"name": "case", "labels": ["lower", "Title", "UPPER", "mixed"]}]}
CLASSIFY = {"labels": ["ham", "spam", "eggs"], "max_len": 0}


def random_params(network, cfg: ModelConfig, seed: int) -> dict:
    """Fresh parameters with noise on every one, biases included (they start at zero, which would hide a
    misplaced bias)."""
    rng = np.random.default_rng(seed)
    params = network.init_params(cfg, rng)
    return {name: (p + 0.5 * rng.standard_normal(p.shape)).astype(p.dtype) for name, p in params.items()}


def exported(tmp_path, params, cfg, data=None):
    """(onnxruntime session, model proto) of the exported checkpoint."""
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", params=params, config=cfg, vocab=VOCAB,
                                 data=data or {})
    written = export_model(checkpoint, tmp_path / "model.onnx")
    return session_of(written["path"]), onnx.load(written["path"])


def padded_rows(lengths, T: int) -> np.ndarray:
    """(T, B, 1): True at each document's real steps."""
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :])[:, :, None]


# ------------------------------------------------------------------------------------------ language models


LM_CASES = [(cell, activation, layers, embed, False) for cell, activation in CELLS for layers in (1, 2)
            for embed in (0, 4)] + [(cell, activation, 2, 6, True) for cell, activation in CELLS]


@pytest.mark.parametrize("cell, activation, layers, embed, tie", LM_CASES,
                         ids=[f"{c}-{a}-L{n}-E{e}{'-tied' if t else ''}" for c, a, n, e, t in LM_CASES])
def test_language_model_matches_charlm_from_any_state_and_step_by_step(tmp_path, cell, activation, layers, embed,
                                                                       tie):
    cfg = ModelConfig(cell, V, 6, layers=layers, embed=embed, activation=activation, tie=tie)
    params = random_params(lm, cfg, seed=layers + embed)
    session, _ = exported(tmp_path, params, cfg)
    rng = np.random.default_rng(1)
    T, B = 7, 3
    x = rng.integers(0, V, (T, B))
    arrays = ("h0", "c0")[:2 if cell == "lstm" else 1]

    state = [tuple((0.5 * rng.standard_normal((B, 6))).astype(np.float32) for _ in layer)
             for layer in init_state(cfg, B)]
    acts, new_state = lm.trace(params, cfg, x, state)
    got = run(session, ids=x.astype(np.int64), **{name: stacked(state, k) for k, name in enumerate(arrays)})
    np.testing.assert_allclose(got["log_probs"], log_softmax(acts["head.logits"]), atol=TOLERANCE)
    for k, name in enumerate(("hn", "cn")[:len(arrays)]):
        np.testing.assert_allclose(got[name], stacked(new_state, k), atol=TOLERANCE)

    acts, zero_started = lm.trace(params, cfg, x, init_state(cfg, B))
    whole = run(session, ids=x.astype(np.int64))  # h0 (and c0) left out: the zero state
    np.testing.assert_allclose(whole["log_probs"], log_softmax(acts["head.logits"]), atol=TOLERANCE)
    np.testing.assert_allclose(whole["hn"], stacked(zero_started, 0), atol=TOLERANCE)

    carried, steps = {}, []
    for t in range(T):
        out = run(session, ids=x[t:t + 1].astype(np.int64), **carried)
        carried = {name: out[name[0] + "n"] for name in arrays}  # hn -> h0, cn -> c0
        steps.append(out["log_probs"][0])
    np.testing.assert_allclose(np.stack(steps), whole["log_probs"], atol=TOLERANCE)
    np.testing.assert_allclose(carried["h0"], whole["hn"], atol=TOLERANCE)


# ------------------------------------------------------------------------------------- taggers, classifiers


TAGGER_CASES = [(cell, activation, layers, bidirectional, embed) for cell, activation in CELLS for layers in (1, 2)
                for bidirectional in (False, True) for embed in (0, 4)]


@pytest.mark.parametrize("cell, activation, layers, bidirectional, embed", TAGGER_CASES,
                         ids=[f"{c}-{a}-L{n}-{'bi' if b else 'uni'}-E{e}" for c, a, n, b, e in TAGGER_CASES])
def test_tagger_matches_charlm_on_a_padded_batch(tmp_path, cell, activation, layers, bidirectional, embed):
    heads = (3,) if embed else (3, 4)  # one head, and two (outputs log_probs_0, log_probs_1)
    cfg = ModelConfig(cell, V, 5, layers=layers, embed=embed, activation=activation, bidirectional=bidirectional,
                      heads=heads)
    params = random_params(tagger, cfg, seed=layers)
    data = {"tagging": {**TAGGING, "heads": TAGGING["heads"][:len(heads)]}}
    session, _ = exported(tmp_path, params, cfg, data)
    rng = np.random.default_rng(2)
    T, lengths = 8, np.array([8, 3, 1, 6])
    x = rng.integers(0, V, (T, len(lengths)))
    expected = tagger.predict(params, cfg, x, lengths)
    got = run(session, ids=x.astype(np.int64), lengths=lengths.astype(np.int64))
    names = ["log_probs"] if len(heads) == 1 else [f"log_probs_{k}" for k in range(len(heads))]
    assert sorted(got) == sorted(names)
    real = padded_rows(lengths, T)
    for name, probs in zip(names, expected, strict=True):
        assert got[name].shape == probs.shape
        np.testing.assert_allclose(np.where(real, got[name], 0.0), np.where(real, np.log(probs), 0.0),
                                   atol=TOLERANCE)


CLASSIFIER_CASES = [(cell, activation, layers, embed, bidirectional, pool) for cell, activation in CELLS
                    for layers, embed in ((1, 0), (2, 4)) for bidirectional in (False, True)
                    for pool in ("last", "mean", "max")]


@pytest.mark.parametrize("cell, activation, layers, embed, bidirectional, pool", CLASSIFIER_CASES,
                         ids=[f"{c}-{a}-L{n}-E{e}-{'bi' if b else 'uni'}-{p}" for c, a, n, e, b, p in CLASSIFIER_CASES])
def test_classifier_matches_charlm_on_a_padded_batch(tmp_path, cell, activation, layers, embed, bidirectional, pool):
    cfg = ModelConfig(cell, V, 5, layers=layers, embed=embed, activation=activation, bidirectional=bidirectional,
                      heads=(3,), pool=pool)
    params = random_params(classifier, cfg, seed=3)
    session, _ = exported(tmp_path, params, cfg, {"classify": CLASSIFY})
    rng = np.random.default_rng(4)
    lengths = np.array([9, 2, 1, 5, 9])
    x = rng.integers(0, V, (9, len(lengths)))
    got = run(session, ids=x.astype(np.int64), lengths=lengths.astype(np.int64))
    np.testing.assert_allclose(got["log_probs"], np.log(classifier.predict(params, cfg, x, lengths)), atol=TOLERANCE)


# ---------------------------------------------------------------------------------- the graph and its metadata


def test_metadata_names_the_vocabulary_labels_and_config(tmp_path):
    cfg = ModelConfig("gru", V, 5, layers=2, bidirectional=True, heads=(3, 4))
    _, model = exported(tmp_path, random_params(tagger, cfg, 0), cfg, {"tagging": TAGGING})
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["charlm.kind"] == "tagger"
    assert json.loads(meta["charlm.vocab"]) == ["<EOS>", "<UNK>", *"abcdefghi"]
    assert json.loads(meta["charlm.tokenizer"]) == {"kind": "char", "lowercase": False}
    assert json.loads(meta["charlm.labels"]) == TAGGING["heads"]
    assert ModelConfig.from_dict(json.loads(meta["charlm.config"])) == cfg

    cfg = ModelConfig("lstm", V, 5, heads=(3,), pool="mean")
    _, model = exported(tmp_path, random_params(classifier, cfg, 0), cfg, {"classify": CLASSIFY})
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["charlm.kind"], json.loads(meta["charlm.labels"])) == ("classifier", CLASSIFY["labels"])

    cfg = ModelConfig("lstm", V, 5)
    _, model = exported(tmp_path, random_params(lm, cfg, 0), cfg)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["charlm.kind"] == "lm" and "charlm.labels" not in meta


@pytest.mark.parametrize("cell, operator", [("rnn", "RNN"), ("gru", "GRU"), ("gru-simple", "GRU"), ("lstm", "LSTM")])
def test_graph_is_standard_onnx_with_one_recurrent_node_per_layer(tmp_path, cell, operator):
    cfg = ModelConfig(cell, V, 5, layers=2, embed=0)
    _, model = exported(tmp_path, random_params(lm, cfg, 0), cfg)
    onnx.checker.check_model(model, full_check=True)  # with shape inference
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    ops = [node.op_type for node in model.graph.node]
    assert ops.count(operator) == 2 and not {"RNN", "GRU", "LSTM"} - {operator} & set(ops)
    assert "OneHot" in ops and "Dropout" not in ops
    assert all(sorted(t.dims)[-2:] != [V, V] for t in model.graph.initializer)  # OneHot, never a (V, V) table
    if operator == "GRU":
        assert all(a.i == 0 for n in model.graph.node if n.op_type == "GRU" for a in n.attribute
                   if a.name == "linear_before_reset")
    inputs = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
    assert inputs["ids"] == ["T", "B"] and inputs["h0"] == [2, "B", 5]


def test_the_pinned_reset_gate_is_exactly_open_in_float32():
    b = np.float32(PINNED_OPEN)
    with np.errstate(over="ignore"):
        assert np.float32(1) / (np.float32(1) + np.exp(-b)) == np.float32(1.0)
        assert np.exp(b) / (np.float32(1) + np.exp(b)) == np.float32(1.0)
        assert np.isfinite(np.exp(b))
    node = onnx.helper.make_node("Sigmoid", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "sigmoid", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    session = session_of(model.SerializeToString())
    assert session.run(None, {"x": np.array([PINNED_OPEN], np.float32)})[0][0] == np.float32(1.0)


def test_a_float64_checkpoint_exports_float32(tmp_path):
    cfg = ModelConfig("lstm", V, 4, dtype="float64")
    params = random_params(lm, cfg, 0)
    session, model = exported(tmp_path, params, cfg)
    floats = {t.data_type for t in model.graph.initializer if t.name.endswith((".W", ".R", ".B", ".b"))}
    assert floats == {onnx.TensorProto.FLOAT}
    x = np.random.default_rng(0).integers(0, V, (5, 2))
    acts, _ = lm.trace(params, cfg, x, init_state(cfg, 2))
    np.testing.assert_allclose(run(session, ids=x)["log_probs"], log_softmax(acts["head.logits"]), atol=TOLERANCE)


# ------------------------------------------------------------------------------------- the example of the docs


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_sampling_example_of_the_docs_runs_on_an_exported_model(tmp_path, monkeypatch, capsys, cell):
    vocab = Vocab.build({c: 1 for c in "ROMEO: Juliet, wherefore art thou?\n"})
    cfg = ModelConfig(cell, vocab.size, 8, layers=2, embed=4)
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", params=random_params(lm, cfg, 0), config=cfg,
                                 vocab=vocab, data={})
    export_model(checkpoint, tmp_path / "shakespeare.onnx")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(docs_example("shakespeare.onnx"), "docs/export.md", "exec"), namespace)
    text = capsys.readouterr().out
    assert text == namespace["text"] + "\n"
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:\n")
    assert set(text[:-1]) <= set(vocab.chars)
