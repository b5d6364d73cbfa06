"""`charlm export` against real runtimes: every exported model run by real torch modules and by onnxruntime,
compared with charlm's own forward (bench only: torch is never a dependency of the package or the tests).

For every kind (language model, tagger, classifier), cell (rnn tanh and relu, gru, gru-simple, lstm), 1 and 2
layers and both directions (taggers and classifiers; the classifier's pooling cycles through last, mean, max),
and a tied language model: random parameters (biases included) in a checkpoint, exported to ONNX and to the
PyTorch state dict. The torch module is the `CharlmModule` of docs/export.md, executed from the doc itself, so
the documented module is what is checked; it loads the state dict with `load_state_dict` (strict). Inputs:
random ids, a random initial state for a language model, a padded batch for the others. The figure is the
largest difference of the log-probabilities (and a language model's final states) from charlm's, relative to
the output's size when it exceeds 1 (`largest_difference`: float32 rounding grows with the values; a 2-layer
relu tagger's log-probabilities reach 30 to 45, where charlm's own float32 forward is 2e-5 from its float64).
Goals: ONNX <= 1e-4, torch <= 1e-5; the lecture's GRU is refused by --format torch. A miss prints FAIL and
exits 1.

With --sample RUN, also exports RUN (a character language model) and runs the sampling example of
docs/export.md on it with onnxruntime, numpy and json alone.

    flock /tmp/charlm-bench.lock .venv/bin/python bench/export.py [--sample runs/shakespeare]
"""

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from charlm.errors import CharlmError
from charlm.export.exporting import export_model
from charlm.models import classifier, lm, tagger
from charlm.models.config import ModelConfig
from charlm.models.encoder import init_state
from charlm.store.checkpoint import save_checkpoint
from charlm.text.tokenizer import Vocab

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "export.md").read_text(encoding="utf-8")
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("gru-simple", "tanh"), ("lstm", "tanh")]
POOLS = ("last", "mean", "max")
ONNX_GOAL, TORCH_GOAL = 1e-4, 1e-5
VOCAB = Vocab.build({c: 1 for c in "abcdefghijklmnopqrstuvwxyz .,"})
H, T = 16, 12
LENGTHS = np.array([12, 5, 1, 9])
NETWORKS = {"lm": lm, "tagger": tagger, "classifier": classifier}


def docs_block(marker: str) -> str:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", DOCS, re.S) if marker in b]
    return block


def cases() -> list[ModelConfig]:
    found, k = [], 0
    for cell, activation in CELLS:
        for layers in (1, 2):
            embed = 8 if layers == 2 else 0
            common = {"layers": layers, "embed": embed, "activation": activation}
            found.append(ModelConfig(cell, VOCAB.size, H, **common))
            for bidirectional in (False, True):
                found.append(ModelConfig(cell, VOCAB.size, H, bidirectional=bidirectional, heads=(3, 4), **common))
                found.append(ModelConfig(cell, VOCAB.size, H, bidirectional=bidirectional, heads=(3,),
                                         pool=POOLS[k % 3], **common))
                k += 1
    found.append(ModelConfig("lstm", VOCAB.size, H, layers=2, embed=H, tie=True))
    return found


def checkpoint(cfg: ModelConfig, directory: Path, seed: int):
    rng = np.random.default_rng(seed)
    params = NETWORKS[cfg.kind].init_params(cfg, rng)
    params = {name: (p + 0.3 * rng.standard_normal(p.shape)).astype(p.dtype) for name, p in params.items()}
    data = {"tagger": {"tagging": {"task": "tag", "heads": [{"name": "a", "labels": ["x", "y", "z"]},
                                                            {"name": "b", "labels": ["p", "q", "r", "s"]}]}},
            "classifier": {"classify": {"labels": ["x", "y", "z"]}}}.get(cfg.kind, {})
    return params, save_checkpoint(directory / "model.safetensors", params=params, config=cfg, vocab=VOCAB, data=data)


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def charlm_outputs(params, cfg, x, state):
    """charlm's forward: [log-probabilities per head, then a LM's final states], real steps only (others 0)."""
    if cfg.kind == "lm":
        acts, new_state = lm.trace(params, cfg, x, state)
        return [log_softmax(acts["head.logits"])] + [np.stack([s[k] for s in new_state])
                                                     for k in range(len(new_state[0]))]
    if cfg.kind == "tagger":
        return [real_steps(np.log(p)) for p in tagger.predict(params, cfg, x, LENGTHS)]
    return [np.log(classifier.predict(params, cfg, x, LENGTHS))]


def real_steps(values):
    return np.where((np.arange(T)[:, None] < LENGTHS[None, :])[:, :, None], values, 0.0)


def onnx_outputs(path, cfg, x, state):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if cfg.kind == "lm":
        names = ("h0", "c0")[:len(state[0])]
        return session.run(None, {"ids": x, **{name: np.stack([s[k] for s in state]) for k, name in enumerate(names)}})
    got = session.run(None, {"ids": x, "lengths": LENGTHS})
    return [real_steps(g) for g in got] if cfg.kind == "tagger" else got


def torch_outputs(load_charlm, path, cfg, x, state):
    module = load_charlm(path)
    ids = torch.from_numpy(x)
    with torch.no_grad():
        if cfg.kind == "lm":
            start = tuple(torch.from_numpy(np.stack([s[k] for s in state])) for k in range(len(state[0])))
            log_probs, final = module(ids, state=start if cfg.cell == "lstm" else start[0])
            final = final if cfg.cell == "lstm" else (final,)
            return [log_probs.numpy()] + [f.numpy() for f in final]
        got = module(ids, torch.from_numpy(LENGTHS))
        return [real_steps(g.numpy()) for g in got] if cfg.kind == "tagger" else [got.numpy()]


def largest_difference(got, expected) -> float:
    """The largest |got - expected| over the outputs, each divided by max(1, its largest |value|): float32
    rounding grows with the values, and a relu network's log-probabilities reach tens."""
    return max(float(np.abs(g - e).max() / max(1.0, np.abs(e).max())) for g, e in zip(got, expected, strict=True))


def compare(load_charlm) -> bool:
    print(f"{'kind':<11}{'cell':<12}{'L':>2}  {'dirs':<5}{'input':<9}{'pool':<6}{'onnx Δ':>10}{'torch Δ':>11}  ok")
    worst_onnx = worst_torch = 0.0
    good = True
    rng = np.random.default_rng(0)
    for seed, cfg in enumerate(cases()):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            params, source = checkpoint(cfg, directory, seed)
            x = rng.integers(0, VOCAB.size, (T, len(LENGTHS)))
            state = [tuple((0.5 * rng.standard_normal(a.shape)).astype(np.float32) for a in layer)
                     for layer in init_state(cfg, len(LENGTHS))]
            expected = charlm_outputs(params, cfg, x, state)
            onnx_path = export_model(source, directory / "model.onnx")["path"]
            onnx_diff = largest_difference(onnx_outputs(onnx_path, cfg, x, state), expected)
            try:
                torch_path = export_model(source, directory / "model.pt.safetensors", fmt="torch")["path"]
            except CharlmError:
                torch_diff, torch_ok = "refused", cfg.cell == "gru"
            else:
                diff = largest_difference(torch_outputs(load_charlm, torch_path, cfg, x, state), expected)
                torch_diff, torch_ok = f"{diff:.1e}", diff <= TORCH_GOAL and cfg.cell != "gru"
                worst_torch = max(worst_torch, diff)
            worst_onnx = max(worst_onnx, onnx_diff)
            ok = onnx_diff <= ONNX_GOAL and torch_ok
            good = good and ok
            cell = f"{cfg.cell}{'/relu' if cfg.activation == 'relu' else ''}"
            source_kind = f"embed {cfg.embed}" if cfg.embed else "one-hot"
            print(f"{cfg.kind + (' tied' if cfg.tie else ''):<11}{cell:<12}{cfg.layers:>2}  "
                  f"{2 if cfg.bidirectional else 1:<5}{source_kind:<9}{cfg.pool or '-':<6}{onnx_diff:>10.1e}"
                  f"{torch_diff:>11}  {'ok' if ok else 'FAIL'}")
    print(f"\nworst: onnx {worst_onnx:.1e} (goal <= {ONNX_GOAL:.0e}), torch {worst_torch:.1e} "
          f"(goal <= {TORCH_GOAL:.0e}); {'all within the goals' if good else 'FAIL'}")
    return good


def sample(run: str) -> None:
    """Export RUN and run the docs' sampling example on it, in a scratch directory."""
    with tempfile.TemporaryDirectory() as tmp:
        export_model(run, Path(tmp) / "shakespeare.onnx")
        here = os.getcwd()
        os.chdir(tmp)
        try:
            print(f"\n== docs/export.md's example on {run}:")
            exec(compile(docs_block("shakespeare.onnx"), "docs/export.md", "exec"), {})
        finally:
            os.chdir(here)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", metavar="RUN", help="Also sample from RUN's export with the docs' example.")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine has 2 cores, and onnxruntime and numpy run beside torch
    namespace = {}
    exec(compile(docs_block("class CharlmModule"), "docs/export.md", "exec"), namespace)
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, V {VOCAB.size}, H {H}, T {T}, "
          f"lengths {LENGTHS.tolist()}\n")
    good = compare(namespace["load_charlm"])
    if args.sample:
        sample(args.sample)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
