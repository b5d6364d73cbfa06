"""Sampling speed: characters per second for 1 stream and for 64 streams with an LSTM 512x2.

charlm's `generate` (numpy) side by side with plain PyTorch step-by-step sampling loops of the same model
(one-hot input, 2-layer LSTM as nn.LSTM called per step or as stacked nn.LSTMCell, linear head, softmax,
multinomial) when `import torch` works; the ratio is against the faster of the two. Random weights
(speed does not depend on them). Targets: charlm at least as fast as torch for 1 stream (>= 1.0x) and at
least twice as fast for 64 streams (>= 2x); a miss prints FAIL and exits 1.

    flock /tmp/charlm-bench.lock .venv/bin/python bench/sample.py [--corpus FILE] [--length 300]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from charlm.models.config import ModelConfig
from charlm.models.lm import init_params
from charlm.tasks.lm.sampling import generate
from charlm.text.tokenizer import Vocab

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"
TARGETS = {1: 1.0, 64: 2.0}


def numpy_chars_per_s(params, cfg, vocab, streams: int, length: int) -> float:
    generate(params, cfg, vocab, num_samples=streams, length=5, seed=0)  # warm-up
    start = time.perf_counter()
    samples = generate(params, cfg, vocab, num_samples=streams, length=length, seed=0)
    seconds = time.perf_counter() - start
    return sum(len(s.ids) for s in samples) / seconds


def torch_chars_per_s(V: int, H: int, layers: int, streams: int, length: int, *, cells: bool) -> float:
    """A plain PyTorch sampling loop: nn.LSTM called once per step, or (cells=True) stacked nn.LSTMCell."""
    import torch

    if cells:
        stack = [torch.nn.LSTMCell(V if i == 0 else H, H) for i in range(layers)]
    else:
        lstm = torch.nn.LSTM(V, H, num_layers=layers)
    head = torch.nn.Linear(H, V)

    def step(x, state):  # x (B, V) -> top output (B, H)
        if not cells:
            out, state = lstm(x[None], state)
            return out[0], state
        state = list(state or [None] * layers)
        for i, cell in enumerate(stack):
            state[i] = cell(x, state[i])
            x = state[i][0]
        return x, state

    with torch.inference_mode():
        def run(n):
            ids = torch.zeros(streams, dtype=torch.long)
            state = None
            for _ in range(n):
                out, state = step(torch.nn.functional.one_hot(ids, V).float(), state)
                probs = torch.softmax(head(out), dim=-1)  # (B, V)
                ids = torch.multinomial(probs, 1)[:, 0]
        run(5)
        start = time.perf_counter()
        run(length)
        return streams * length / (time.perf_counter() - start)


def match_torch_threads(torch) -> None:
    """Give torch the thread count numpy's BLAS is limited to by the environment (like for like)."""
    for name in THREAD_VARIABLES:
        if os.environ.get(name, "").isdigit():
            torch.set_num_threads(int(os.environ[name]))
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="take the vocabulary from this text "
                                                     "(default: tinyshakespeare if present, else 65 letters)")
    parser.add_argument("--length", type=int, default=300, help="characters generated per stream")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per measurement; the best is reported (the machine is shared)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    corpus = args.corpus or (DEFAULT_CORPUS if DEFAULT_CORPUS.exists() else None)
    text = corpus.read_text(encoding="utf-8") if corpus else "".join(chr(c) for c in range(48, 48 + 65))
    vocab = Vocab(sorted(set(text)))
    cfg = ModelConfig("lstm", vocab.size, args.hidden, layers=args.layers)
    params = init_params(cfg, np.random.default_rng(0))
    try:
        import torch

        have_torch = True
        match_torch_threads(torch)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    except ImportError:
        have_torch = False
        print("torch not importable: numpy figures only")
    print(f"LSTM {args.hidden}x{args.layers}, V={vocab.size}, {args.length} characters per stream, "
          f"best of {args.repeats} runs")

    misses = []
    for streams in (1, 64):
        ours = max(numpy_chars_per_s(params, cfg, vocab, streams, args.length) for _ in range(args.repeats))
        line = f"{streams:>3} stream(s): charlm {ours:>10,.0f} chars/s"
        if have_torch:
            loop, cell = (max(torch_chars_per_s(vocab.size, args.hidden, args.layers, streams, args.length,
                                                cells=cells) for _ in range(args.repeats))
                          for cells in (False, True))
            theirs = max(loop, cell)
            ratio = ours / theirs
            line += (f" | torch nn.LSTM {loop:>8,.0f}, nn.LSTMCell {cell:>8,.0f} chars/s | ratio to the "
                     f"faster {ratio:.2f}x (target >= {TARGETS[streams]}x)")
            if ratio < TARGETS[streams]:
                misses.append(f"{streams} stream(s) {ratio:.2f}x < {TARGETS[streams]}x")
        print(line)
    print("FAIL: " + "; ".join(misses) if misses else "PASS" if have_torch else "no torch: no ratio")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
