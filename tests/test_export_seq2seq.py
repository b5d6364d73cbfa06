"""`charlm export` of an encoder–decoder, checked not trusted: the encoder graph and decoder steps of every
attention, cell, depth, direction and input layer run in onnxruntime on a padded batch and match charlm's own
`seq2seq.encode` and `seq2seq.decode_step` to 1e-4; greedy decoding with the two graphs (the example of
docs/export.md) writes what charlm's greedy decoding writes; the metadata names both vocabularies and the part."""

import json

import numpy as np
import onnx  # the dev extra: the tests need the real runtime, never a skip
import pytest
from onnx_runs import docs_example, run, session_of, stacked
from reference import log_softmax

from charlm.export.exporting import export_model, seq2seq_paths
from charlm.models import seq2seq
from charlm.models.config import ATTENTIONS, ModelConfig
from charlm.store.checkpoint import save_checkpoint
from charlm.tasks.translate import decoding
from charlm.text.tokenizer import Vocab
from charlm.text.vocab import EOS

SOURCE = Vocab.build({c: 1 for c in "helowrd"})  # V = 9
TARGET = Vocab.build({c: 1 for c in "HELOW"})  # U = 7
H = 5
TOLERANCE = 1e-4
CELLS = ["rnn", "gru", "gru-simple", "lstm"]


def model(attention, cell="lstm", layers=1, bidirectional=False, embed=3, seed=0, activation="tanh"):
    """(params, cfg) of a random float32 encoder–decoder, with noise on every parameter (biases start at zero,
    which would hide a misplaced bias)."""
    cfg = ModelConfig(cell=cell, vocab_size=SOURCE.size, hidden=H, layers=layers, embed=embed,
                      bidirectional=bidirectional, target_vocab=TARGET.size, attention=attention,
                      activation=activation)
    rng = np.random.default_rng(seed)
    params = seq2seq.init_params(cfg, rng)
    return {name: (p + 0.5 * rng.standard_normal(p.shape)).astype(p.dtype) for name, p in params.items()}, cfg


def exported(tmp_path, params, cfg, name="model.onnx") -> dict:
    """What export_model returned for a checkpoint of the model."""
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", params=params, config=cfg, vocab=SOURCE,
                                 data={"translate": {"target_vocab": TARGET.to_dict()}})
    return export_model(checkpoint, tmp_path / name)


def sessions(written) -> tuple:
    """(encoder, decoder) onnxruntime sessions of what export_model wrote."""
    return tuple(session_of(f["path"]) for f in written["files"])


CASES = [(attention, cell, layers, bidirectional, embed) for attention in ATTENTIONS for cell in CELLS
         for layers in (1, 2) for bidirectional in (False, True) for embed in (0, 3)
         if not (attention == "dot" and bidirectional)]


@pytest.mark.parametrize("attention, cell, layers, bidirectional, embed", CASES,
                         ids=[f"{a}-{c}-L{n}-{'bi' if b else 'uni'}-E{e}" for a, c, n, b, e in CASES])
def test_encoder_and_decoder_steps_match_charlm_on_a_padded_batch(tmp_path, attention, cell, layers, bidirectional,
                                                                  embed):
    params, cfg = model(attention, cell, layers, bidirectional, embed, seed=layers + embed)
    encoder, decoder = sessions(exported(tmp_path, params, cfg))
    rng = np.random.default_rng(1)
    S, lengths = 6, np.array([6, 3, 1, 4])
    src = rng.integers(0, SOURCE.size, (S, len(lengths)))
    memory, state = seq2seq.encode(params, cfg, src, lengths)

    encoded = run(encoder, src=src, src_lengths=lengths)
    real = (np.arange(S)[:, None] < lengths[None, :])[:, :, None]  # (S, B, 1)
    np.testing.assert_allclose(np.where(real, encoded["memory"], 0.0),
                               np.where(real, memory.states.transpose(1, 0, 2), 0.0), atol=TOLERANCE)
    arrays = ("h", "c")[:2 if cell == "lstm" else 1]
    assert sorted(encoded) == sorted(["memory", *(f"state_{a}" for a in arrays)])
    for k, a in enumerate(arrays):
        np.testing.assert_allclose(encoded[f"state_{a}"], stacked(state, k), atol=TOLERANCE)

    carried = {f"{a}0": encoded[f"state_{a}"] for a in arrays}
    ids = np.zeros(len(lengths), np.int64)  # <EOS> starts every row
    for step in range(4):
        logits, state, alpha = seq2seq.decode_step(params, cfg, memory, ids, state)
        got = run(decoder, ids=ids, memory=encoded["memory"], src_lengths=lengths, **carried)
        np.testing.assert_allclose(got["log_probs"], log_softmax(logits), atol=TOLERANCE, err_msg=f"step {step}")
        for k, a in enumerate(arrays):
            np.testing.assert_allclose(got[f"{a}n"], stacked(state, k), atol=TOLERANCE, err_msg=f"step {step}")
        if attention == "none":
            assert "attention" not in got
        else:
            np.testing.assert_allclose(got["attention"], alpha, atol=TOLERANCE, err_msg=f"step {step}")
            assert np.all(got["attention"][~real[:, :, 0].T] == 0.0)  # exactly nothing on padding
        carried = {f"{a}0": got[f"{a}n"] for a in arrays}
        # the model's own choice on even steps, fixed random ids on odd ones
        ids = logits.argmax(axis=1) if step % 2 == 0 else rng.integers(0, TARGET.size, len(lengths))


def test_a_relu_rnn_matches_charlm_too(tmp_path):
    params, cfg = model("additive", "rnn", layers=2, bidirectional=True, activation="relu")
    encoder, decoder = sessions(exported(tmp_path, params, cfg))
    src, lengths = np.array([[1, 2], [3, 4], [5, 0]]), np.array([3, 2])
    memory, state = seq2seq.encode(params, cfg, src, lengths)
    encoded = run(encoder, src=src, src_lengths=lengths)
    np.testing.assert_allclose(encoded["state_h"], stacked(state, 0), atol=TOLERANCE)
    logits, _, alpha = seq2seq.decode_step(params, cfg, memory, np.array([0, 3]), state)
    got = run(decoder, ids=np.array([0, 3]), h0=encoded["state_h"], memory=encoded["memory"], src_lengths=lengths)
    np.testing.assert_allclose(got["log_probs"], log_softmax(logits), atol=TOLERANCE)
    np.testing.assert_allclose(got["attention"], alpha, atol=TOLERANCE)


# ---------------------------------------------------------------------------------- files, metadata, signature


def test_two_files_named_from_the_output_with_their_parts_vocabularies_and_signatures(tmp_path):
    params, cfg = model("general", "lstm", layers=2, bidirectional=True)
    written = exported(tmp_path, params, cfg, name="reverse.onnx")
    paths = seq2seq_paths(tmp_path / "reverse.onnx")
    assert {p.name for p in paths.values()} == {"reverse.encoder.onnx", "reverse.decoder.onnx"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "reverse.decoder.onnx",
                                                          "reverse.encoder.onnx"]
    assert [(f["part"], f["path"], f["bytes"]) for f in written["files"]] == [
        (part, str(path), path.stat().st_size) for part, path in paths.items()]
    assert (written["kind"], written["format"], written["path"]) == ("seq2seq", "onnx", str(paths["encoder"]))
    encoder, decoder = written["files"]
    assert [(v["name"], v["dtype"], v["shape"]) for v in encoder["inputs"]] == [
        ("src", "int64", ["S", "B"]), ("src_lengths", "int64", ["B"])]
    assert [(v["name"], v["shape"]) for v in encoder["outputs"]] == [
        ("memory", ["S", "B", 2 * H]), ("state_h", [2, "B", H]), ("state_c", [2, "B", H])]
    assert [(v["name"], v["shape"], v["optional"]) for v in decoder["inputs"]] == [
        ("ids", ["B"], False), ("h0", [2, "B", H], False), ("c0", [2, "B", H], False),
        ("memory", ["S", "B", 2 * H], False), ("src_lengths", ["B"], False)]
    assert [(v["name"], v["dtype"], v["shape"]) for v in decoder["outputs"]] == [
        ("log_probs", "float32", ["B", TARGET.size]), ("hn", "float32", [2, "B", H]),
        ("cn", "float32", [2, "B", H]), ("attention", "float32", ["B", "S"])]
    for part, path in paths.items():
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)  # with shape inference
        assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
        assert [n.op_type for n in proto.graph.node].count("LSTM") == 2
        meta = {p.key: p.value for p in proto.metadata_props}
        assert (meta["charlm.kind"], meta["charlm.part"]) == ("seq2seq", part)
        assert json.loads(meta["charlm.vocab"]) == ["<EOS>", "<UNK>", *SOURCE.tokens]
        assert json.loads(meta["charlm.target_vocab"]) == ["<EOS>", "<UNK>", *"EHLOW"]
        assert json.loads(meta["charlm.tokenizer"]) == json.loads(meta["charlm.target_tokenizer"]) == {
            "kind": "char", "lowercase": False}
        assert ModelConfig.from_dict(json.loads(meta["charlm.config"])) == cfg


def test_the_one_hot_decoder_has_no_dense_table(tmp_path):
    params, cfg = model("dot", "gru", embed=0)
    exported(tmp_path, params, cfg)
    proto = onnx.load(str(seq2seq_paths(tmp_path / "model.onnx")["decoder"]))
    assert "OneHot" in {n.op_type for n in proto.graph.node}
    assert all(sorted(t.dims)[-2:] != [TARGET.size, TARGET.size] for t in proto.graph.initializer)


# ------------------------------------------------------------------------------- greedy decoding, the docs' example


# eos_bias shifts the head's <EOS> logit so that some outputs end at <EOS> and some at the length cap
GREEDY_CASES = [("additive", "lstm", True, 0.0), ("none", "gru", False, 0.0), ("dot", "rnn", False, 0.0),
                ("general", "gru-simple", True, -1.0)]


@pytest.mark.parametrize("attention, cell, bidirectional, eos_bias", GREEDY_CASES)
def test_greedy_decoding_with_the_docs_example_writes_what_charlm_writes(tmp_path, monkeypatch, capsys, attention,
                                                                         cell, bidirectional, eos_bias):
    params, cfg = model(attention, cell, layers=2, bidirectional=bidirectional, seed=3)
    params["head.b"][EOS] += eos_bias
    exported(tmp_path, params, cfg)
    monkeypatch.chdir(tmp_path)
    example = docs_example(".decoder.onnx")
    assert 'source = "hello"\n' in example
    sources = ["hello", "world", "low", "d", "ohell"]
    translator = decoding.Translator(params, cfg, SOURCE, TARGET)
    expected = decoding.generate(translator, [decoding.source_ids(translator, s) for s in sources])
    for source, (output,) in zip(sources, expected, strict=True):
        exec(compile(example.replace('"hello"', repr(source)), "docs/export.md", "exec"), {})
        assert capsys.readouterr().out == output.text + "\n", source
    assert any(output.text for (output,) in expected)  # some output is not empty
