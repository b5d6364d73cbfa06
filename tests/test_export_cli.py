"""`charlm export` end to end on tiny real runs (a real `charlm export` process): the files written and what
`--json` says of them, and bad input: one line on stderr, the documented exit code, nothing written."""

import json
import sys

import numpy as np
import onnx
import pytest
import safetensors
from helpers import assert_one_line_error, charlm_env, invoke
from helpers import run_charlm as run
from onnx_runs import run as run_onnx
from onnx_runs import session_of
from reference import log_softmax

from charlm.models import lm, seq2seq
from charlm.models.config import ModelConfig
from charlm.store.checkpoint import load_checkpoint, save_checkpoint
from charlm.tasks.classify.classifier_inference import as_classifier
from charlm.tasks.registry import train
from charlm.text.tokenizer import Vocab
from charlm.training.options import TrainOptions

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny real runs: a language model trained by a `charlm train` process, a classifier and an
    encoder–decoder trained in this process, and a lecture-GRU language model's checkpoint."""
    root = tmp_path_factory.mktemp("export_cli")
    rng = np.random.default_rng(0)
    corpus = write(root / "corpus.txt", "\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(200)) + "\n")
    done = run("train", corpus, "--out", root / "lm", "--steps", 20, "--cell", "lstm", "--hidden", 16, "--layers", 2,
               "--batch", 4, "--seq-len", 16, "-q", env=charlm_env())
    assert done.returncode == 0, done.stderr
    names = write(root / "names.tsv", "\n".join(f"{label}\t{stem}{label[:2]}" for label in ("ov", "los", "ki")
                                                for stem in ("bor", "kat", "mir", "sen", "dal", "ter")) + "\n")
    train(TrainOptions(corpus=str(names), out=str(root / "classifier"), task="classify", bidirectional=True,
                       hidden=8, layers=1, batch=8, steps=3))
    pairs = write(root / "pairs.tsv", "\n".join(f"{w}\t{w[::-1]}" for w in WORDS * 4) + "\n")
    train(TrainOptions(corpus=str(pairs), out=str(root / "translate"), task="translate", hidden=4, layers=1,
                       batch=8, steps=1))
    vocab = Vocab.build({c: 1 for c in "abc "})
    cfg = ModelConfig("gru", vocab.size, 4)
    gru = save_checkpoint(root / "gru.safetensors", params=lm.init_params(cfg, np.random.default_rng(0)), config=cfg,
                          vocab=vocab, data={})
    return {"root": root, "lm": root / "lm", "classifier": root / "classifier", "translate": root / "translate",
            "gru": gru}


def files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.slow
def test_a_language_model_exports_to_onnx_and_torch(runs, tmp_path):
    onnx_file = tmp_path / "lm.onnx"
    done = run("export", runs["lm"], "-o", onnx_file, "--json", env=charlm_env())
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert written["path"] == str(onnx_file) and written["bytes"] == onnx_file.stat().st_size
    assert (written["format"], written["kind"], written["cell"]) == ("onnx", "lm", "lstm")
    assert written["source"] == str(runs["lm"] / "best.safetensors")
    assert [(v["name"], v["shape"], v["optional"]) for v in written["inputs"]] == [
        ("ids", ["T", "B"], False), ("h0", [2, "B", 16], True), ("c0", [2, "B", 16], True)]
    assert [(v["name"], v["dtype"]) for v in written["outputs"]] == [("log_probs", "float32"), ("hn", "float32"),
                                                                      ("cn", "float32")]

    ckpt = load_checkpoint(runs["lm"])
    x = np.random.default_rng(0).integers(0, ckpt.config.vocab_size, (12, 2))
    log_probs = run_onnx(session_of(onnx_file), ids=x)["log_probs"]
    acts, _ = lm.trace(ckpt.params, ckpt.config, x, lm.init_state(ckpt.config, 2))
    np.testing.assert_allclose(log_probs, log_softmax(acts["head.logits"]), atol=1e-4)

    torch_file = tmp_path / "lm.safetensors"
    done = run("export", runs["lm"], "-o", torch_file, "--format", "torch", env=charlm_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(torch_file) in done.stdout and "nn.LSTM(input_size=" in done.stdout
    with safetensors.safe_open(torch_file, "np") as f:
        assert json.loads(f.metadata()["charlm.module"])["num_layers"] == 2
        assert "rnn.weight_ih_l1" in f.keys()


@pytest.mark.slow
def test_a_classifier_exports_with_its_labels(runs, tmp_path):
    out = tmp_path / "classifier.onnx"
    done = run("export", runs["classifier"], "-o", out, "--json", env=charlm_env())
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert written["kind"] == "classifier"
    assert [v["name"] for v in written["inputs"]] == ["ids", "lengths"]
    assert [(v["name"], v["shape"]) for v in written["outputs"]] == [("log_probs", ["B", 3])]
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["charlm.labels"]) == list(as_classifier(load_checkpoint(runs["classifier"])).labels)


@pytest.mark.slow
def test_an_encoder_decoder_exports_its_encoder_and_decoder_graphs(runs, tmp_path):
    done = run("export", runs["translate"], "-o", tmp_path / "reverse.onnx", "--json", env=charlm_env())
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    paths = [tmp_path / "reverse.encoder.onnx", tmp_path / "reverse.decoder.onnx"]
    assert files(tmp_path) == ["reverse.decoder.onnx", "reverse.encoder.onnx"]
    assert (written["kind"], written["path"]) == ("seq2seq", str(paths[0]))
    assert [(f["part"], f["path"], f["bytes"]) for f in written["files"]] == [
        (part, str(path), path.stat().st_size) for part, path in zip(("encoder", "decoder"), paths, strict=True)]
    assert [v["name"] for v in written["files"][0]["inputs"]] == ["src", "src_lengths"]
    assert [v["name"] for v in written["files"][1]["inputs"]][0] == "ids"
    assert [v["name"] for v in written["files"][1]["outputs"]][0] == "log_probs"

    ckpt = load_checkpoint(runs["translate"])
    src, lengths = np.array([[2, 3], [4, 2], [5, 0]]), np.array([3, 2])
    memory, state = seq2seq.encode(ckpt.params, ckpt.config, src, lengths)
    logits, _, _ = seq2seq.decode_step(ckpt.params, ckpt.config, memory, np.zeros(2, np.int64), state)
    encoder, decoder = (session_of(path) for path in paths)
    encoded = run_onnx(encoder, src=src, src_lengths=lengths)
    feeds = {"ids": np.zeros(2, np.int64), "memory": encoded["memory"], "src_lengths": lengths,
             **{f"{name[-1]}0": encoded[name] for name in ("state_h", "state_c") if name in encoded}}
    np.testing.assert_allclose(run_onnx(decoder, **feeds)["log_probs"], log_softmax(logits), atol=1e-4)

    done = run("export", runs["translate"], "-o", tmp_path / "again.onnx", env=charlm_env())
    assert done.returncode == 0, done.stderr
    assert "again.encoder.onnx" in done.stdout and "again.decoder.onnx" in done.stdout  # both files drawn
    assert "decoder outputs" in done.stdout and "log_probs" in done.stdout
    assert (tmp_path / "again.decoder.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["random bytes", "truncated", "missing directory", "unknown format",
                                  "encoder-decoder to torch", "lecture gru to torch", "over its checkpoint"])
def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, case):
    source, out, extra = runs["lm"], tmp_path / "model.onnx", []
    if case == "random bytes":
        source = tmp_path / "random.safetensors"
        source.write_bytes(np.random.default_rng(0).bytes(4096))
        code, fragments = 1, ["not a charlm checkpoint"]
    elif case == "truncated":
        whole = (runs["lm"] / "best.safetensors").read_bytes()
        source = tmp_path / "truncated.safetensors"
        source.write_bytes(whole[:len(whole) // 2])
        code, fragments = 1, ["truncated"]
    elif case == "missing directory":
        out = tmp_path / "nowhere" / "model.onnx"
        code, fragments = 1, ["does not exist"]
    elif case == "unknown format":
        code, fragments, extra = 2, ["--format", "tflite"], ["--format", "tflite"]
    elif case == "encoder-decoder to torch":
        source, extra, code = runs["translate"], ["--format", "torch"], 1
        fragments = ["encoder–decoder", "language models, taggers and classifiers", "--format onnx"]
    elif case == "lecture gru to torch":
        source, extra, code, fragments = runs["gru"], ["--format", "torch"], 1, ["nn.GRU", "--format onnx"]
    else:
        source = tmp_path / "copy.safetensors"
        source.write_bytes((runs["lm"] / "best.safetensors").read_bytes())
        out, code, fragments = source, 2, ["is the checkpoint being exported"]
    before = files(tmp_path)
    done = run("export", source, "-o", out, *extra, env=charlm_env())
    assert_one_line_error(done, code, *fragments)
    assert files(tmp_path) == before  # nothing written, not even a temporary file
    if case == "over its checkpoint":
        assert load_checkpoint(source).config.cell == "lstm"


def test_without_onnx_the_error_names_the_extra(tmp_path, monkeypatch):
    vocab = Vocab.build({c: 1 for c in "abc "})
    cfg = ModelConfig("lstm", vocab.size, 4)
    source = save_checkpoint(tmp_path / "lm.safetensors", params=lm.init_params(cfg, np.random.default_rng(0)),
                             config=cfg, vocab=vocab, data={})
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    result = invoke("export", source, "-o", tmp_path / "model.onnx")
    assert_one_line_error(result, 1, "pip install 'charlm[export]'")
    assert files(tmp_path) == ["lm.safetensors"]
