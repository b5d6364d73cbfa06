"""`charlm export --format torch`, checked without torch: a numpy implementation of PyTorch's documented
nn.LSTM / nn.GRU / nn.RNN equations (and of the module of docs/export.md) reads the exported tensors by their
state-dict names and must match charlm's own forward to 1e-5, for every cell nn.* can express; the lecture's GRU
is refused."""

import json

import numpy as np
import pytest
import safetensors
import safetensors.numpy
from reference import log_softmax, torch_gru, torch_lstm, torch_rnn

from charlm.errors import CharlmError
from charlm.export.exporting import export_model
from charlm.models import classifier, lm, tagger
from charlm.models.config import ModelConfig
from charlm.models.encoder import init_state
from charlm.store.checkpoint import save_checkpoint
from charlm.text.tokenizer import Vocab

VOCAB = Vocab.build({c: 1 for c in "abcdefghi"})  # V = 11
V = VOCAB.size
TOLERANCE = 1e-5
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru-simple", "tanh"), ("lstm", "tanh")]
CELL_IDS = ["rnn-tanh", "rnn-relu", "gru-simple", "lstm"]
TAGGING = {"task": "tag", "heads": [{"name": "pos", "labels": ["N", "V", "X"]},
                                    {"name": "case", "labels": ["lower", "Title", "UPPER", "mixed"]}]}
CLASSIFY = {"labels": ["ham", "spam", "eggs"], "max_len": 0}


def random_params(network, cfg: ModelConfig, seed: int) -> dict:
    """Fresh parameters with noise on every one, biases included."""
    rng = np.random.default_rng(seed)
    params = network.init_params(cfg, rng)
    return {name: (p + 0.5 * rng.standard_normal(p.shape)).astype(p.dtype) for name, p in params.items()}


def exported(tmp_path, params, cfg, data=None) -> tuple[dict, dict, dict]:
    """(tensors, module arguments, metadata) of the exported checkpoint, read back from the file."""
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", params=params, config=cfg, vocab=VOCAB,
                                 data=data or {})
    path = export_model(checkpoint, tmp_path / "torch.safetensors", fmt="torch")["path"]
    with safetensors.safe_open(path, "np") as f:
        metadata = f.metadata()
    return safetensors.numpy.load_file(path), json.loads(metadata["charlm.module"]), metadata


# ------------------------------------------------------------------------- PyTorch's equations, in numpy

def torch_layer(mode, nonlinearity, x, W_ih, W_hh, b_ih, b_hh, h, c):
    """One direction of one layer of nn.LSTM / nn.GRU / nn.RNN (`reference`'s equations) over x (T, B, D) from
    h, c (B, H). Returns (outputs (T, B, H), h, c)."""
    if mode == "LSTM":
        outputs, (h, c) = torch_lstm(x, h, c, W_ih, W_hh, b_ih, b_hh)
    elif mode == "GRU":
        outputs, h = torch_gru(x, h, W_ih, W_hh, b_ih, b_hh)
    else:
        outputs, h = torch_rnn(x, h, W_ih, W_hh, b_ih, b_hh, nonlinearity)
    return outputs, h, c


def torch_module(tensors, args, ids, lengths=None, state=None):
    """The module of docs/export.md in numpy. A LM: -> (log_probs (T, B, V), [h_n, c_n] (L, B, H)); a tagger:
    [log_probs (T, B, K_k)]; a classifier: log_probs (B, K). Documents run over their real steps only, the
    reverse direction from the last (as a packed sequence); padded outputs are zero (pad_packed_sequence)."""
    T, B = ids.shape
    H, L = args["hidden_size"], args["num_layers"]
    x = np.eye(args["vocab_size"])[ids] if args["one_hot"] else tensors["embedding.weight"][ids]
    lengths = np.full(B, T) if lengths is None else lengths
    state = state or [np.zeros((L, B, H)), np.zeros((L, B, H))]
    finals = [[], []]  # h_n, c_n: (layer, direction) in PyTorch's order
    for layer in range(L):
        outputs = []
        for suffix in ["", "_reverse"][:2 if args["bidirectional"] else 1]:
            weights = [tensors[f"rnn.{name}_l{layer}{suffix}"] for name in ("weight_ih", "weight_hh", "bias_ih",
                                                                            "bias_hh")]
            out, h_n, c_n = np.zeros((T, B, H)), np.zeros((B, H)), np.zeros((B, H))
            for b, n in enumerate(lengths):
                steps = np.arange(n)[::-1] if suffix else np.arange(n)
                h0, c0 = (np.zeros((1, H)), np.zeros((1, H))) if suffix else (state[0][layer, b:b + 1],
                                                                              state[1][layer, b:b + 1])
                y, h, c = torch_layer(args["mode"], args.get("nonlinearity"), x[steps, b:b + 1], *weights, h0, c0)
                out[steps, b], h_n[b], c_n[b] = y[:, 0], h[0], c[0]
            outputs.append(out)
            finals[0].append(h_n)
            finals[1].append(c_n)
        x = np.concatenate(outputs, axis=2)
    if args["kind"] == "lm":
        return log_softmax(x @ tensors["head.weight"].T + tensors["head.bias"]), finals
    if args["kind"] == "tagger":
        return [log_softmax(x @ tensors[f"heads.{k}.weight"].T + tensors[f"heads.{k}.bias"])
                for k in range(len(args["heads"]))]
    if args["pool"] == "last":
        pooled = np.concatenate(finals[0][-len(outputs):], axis=1)
    elif args["pool"] == "mean":
        pooled = x.sum(axis=0) / lengths[:, None]
    else:
        pooled = np.where(np.arange(T)[:, None, None] < lengths[None, :, None], x, -np.inf).max(axis=0)
    return log_softmax(pooled @ tensors["head.weight"].T + tensors["head.bias"])


# ---------------------------------------------------------------------------------------------------- tests

LM_CASES = [(cell, activation, layers, embed, False) for cell, activation in CELLS for layers in (1, 2)
            for embed in (0, 4)] + [(cell, activation, 2, 6, True) for cell, activation in CELLS]


@pytest.mark.parametrize("cell, activation, layers, embed, tie", LM_CASES,
                         ids=[f"{c}-{a}-L{n}-E{e}{'-tied' if t else ''}" for c, a, n, e, t in LM_CASES])
def test_language_model_matches_charlm(tmp_path, cell, activation, layers, embed, tie):
    cfg = ModelConfig(cell, V, 6, layers=layers, embed=embed, activation=activation, tie=tie)
    params = random_params(lm, cfg, seed=layers + embed)
    tensors, args, _ = exported(tmp_path, params, cfg)
    rng = np.random.default_rng(1)
    x = rng.integers(0, V, (7, 3))
    state = [tuple((0.5 * rng.standard_normal((3, 6))).astype(np.float32) for _ in layer)
             for layer in init_state(cfg, 3)]
    acts, new_state = lm.trace(params, cfg, x, state)
    start = [np.stack([layer[k] for layer in state]) for k in range(len(state[0]))]
    log_probs, finals = torch_module(tensors, args, x, state=start + [np.zeros_like(start[0])] * (2 - len(start)))
    np.testing.assert_allclose(log_probs, log_softmax(acts["head.logits"]), atol=TOLERANCE)
    for k in range(len(new_state[0])):
        np.testing.assert_allclose(np.stack(finals[k]), np.stack([layer[k] for layer in new_state]), atol=TOLERANCE)


TAGGER_CASES = [(cell, activation, layers, bidirectional) for cell, activation in CELLS for layers in (1, 2)
                for bidirectional in (False, True)]


@pytest.mark.parametrize("cell, activation, layers, bidirectional", TAGGER_CASES,
                         ids=[f"{c}-{a}-L{n}-{'bi' if b else 'uni'}" for c, a, n, b in TAGGER_CASES])
def test_tagger_matches_charlm_on_a_padded_batch(tmp_path, cell, activation, layers, bidirectional):
    heads = (3, 4) if layers == 2 else (3,)
    cfg = ModelConfig(cell, V, 5, layers=layers, embed=4 if bidirectional else 0, activation=activation,
                      bidirectional=bidirectional, heads=heads)
    params = random_params(tagger, cfg, seed=layers)
    tensors, args, _ = exported(tmp_path, params, cfg, {"tagging": {**TAGGING, "heads": TAGGING["heads"][:len(heads)]}})
    rng = np.random.default_rng(2)
    lengths = np.array([8, 3, 1, 6])
    x = rng.integers(0, V, (8, len(lengths)))
    real = (np.arange(8)[:, None] < lengths[None, :])[:, :, None]
    for got, probs in zip(torch_module(tensors, args, x, lengths), tagger.predict(params, cfg, x, lengths),
                          strict=True):
        np.testing.assert_allclose(np.where(real, got, 0.0), np.where(real, np.log(probs), 0.0), atol=TOLERANCE)


CLASSIFIER_CASES = [(cell, activation, layers, bidirectional, pool) for cell, activation in CELLS
                    for layers in (1, 2) for bidirectional in (False, True) for pool in ("last", "mean", "max")]


@pytest.mark.parametrize("cell, activation, layers, bidirectional, pool", CLASSIFIER_CASES,
                         ids=[f"{c}-{a}-L{n}-{'bi' if b else 'uni'}-{p}" for c, a, n, b, p in CLASSIFIER_CASES])
def test_classifier_matches_charlm_on_a_padded_batch(tmp_path, cell, activation, layers, bidirectional, pool):
    cfg = ModelConfig(cell, V, 5, layers=layers, embed=4 if layers == 2 else 0, activation=activation,
                      bidirectional=bidirectional, heads=(3,), pool=pool)
    params = random_params(classifier, cfg, seed=3)
    tensors, args, _ = exported(tmp_path, params, cfg, {"classify": CLASSIFY})
    rng = np.random.default_rng(4)
    lengths = np.array([9, 2, 1, 5, 9])
    x = rng.integers(0, V, (9, len(lengths)))
    np.testing.assert_allclose(torch_module(tensors, args, x, lengths),
                               np.log(classifier.predict(params, cfg, x, lengths)), atol=TOLERANCE)


def test_names_shapes_and_arguments_are_pytorchs(tmp_path):
    """nn.LSTM(4, 5, 2, bidirectional=True)'s state dict, as the PyTorch docs list it: weight_ih_l0 (4H, D),
    weight_ih_l1 (4H, 2H), weight_hh (4H, H), both biases (4H,), `_reverse` for the second direction."""
    cfg = ModelConfig("lstm", V, 5, layers=2, embed=4, bidirectional=True, heads=(3, 4))
    tensors, args, metadata = exported(tmp_path, random_params(tagger, cfg, 0), cfg, {"tagging": TAGGING})
    expected = {"embedding.weight": (V, 4)}
    for layer, width in ((0, 4), (1, 10)):
        for suffix in ("", "_reverse"):
            expected |= {f"rnn.weight_ih_l{layer}{suffix}": (20, width), f"rnn.weight_hh_l{layer}{suffix}": (20, 5),
                         f"rnn.bias_ih_l{layer}{suffix}": (20,), f"rnn.bias_hh_l{layer}{suffix}": (20,)}
    expected |= {"heads.0.weight": (3, 10), "heads.0.bias": (3,), "heads.1.weight": (4, 10), "heads.1.bias": (4,)}
    assert {name: t.shape for name, t in tensors.items()} == expected
    assert {t.dtype for t in tensors.values()} == {np.dtype(np.float32)}
    assert args == {"kind": "tagger", "mode": "LSTM", "vocab_size": V, "embedding_dim": 4, "one_hot": False,
                    "input_size": 4, "hidden_size": 5, "num_layers": 2, "bidirectional": True, "batch_first": False,
                    "heads": [3, 4], "pool": "", "tie": False}
    assert metadata["format"] == "pt" and json.loads(metadata["charlm.labels"]) == TAGGING["heads"]
    assert json.loads(metadata["charlm.vocab"]) == ["<EOS>", "<UNK>", *"abcdefghi"]

    cfg = ModelConfig("rnn", V, 5, activation="relu")
    tensors, args, _ = exported(tmp_path, random_params(lm, cfg, 0), cfg)
    assert (args["mode"], args["nonlinearity"], args["one_hot"], args["input_size"]) == ("RNN", "relu", True, V)
    assert tensors["rnn.weight_ih_l0"].shape == (5, V) and "embedding.weight" not in tensors
    assert tensors["head.weight"].shape == (V, 5)


def test_the_lectures_gru_is_refused_and_nothing_is_written(tmp_path):
    cfg = ModelConfig("gru", V, 5)
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", params=random_params(lm, cfg, 0), config=cfg,
                                 vocab=VOCAB, data={})
    with pytest.raises(CharlmError, match="nn.GRU applies it after") as refused:
        export_model(checkpoint, tmp_path / "torch.safetensors", fmt="torch")
    assert refused.value.exit_code == 1 and "\n" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
