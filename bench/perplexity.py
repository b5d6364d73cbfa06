"""Scoring speed: characters per second for exact perplexity and for `--streams 64` with an LSTM 512x2.

charlm's `score_ids` (numpy) side by side with a batched PyTorch forward of the same model (one-hot
input, 2-layer LSTM, linear head, cross-entropy; 64 contiguous streams, 256 steps per call, state carried)
when `import torch` works. The text is the held-out tail (last 10%, 111,539 characters) of
tinyshakespeare when present, else random ids. Random weights: speed does not depend on them.
Target: `--streams 64` >= 1.0x the PyTorch batched forward.

    flock /tmp/charlm-bench.lock .venv/bin/python bench/perplexity.py [--corpus FILE] [--burn-in 128]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from charlm.models.config import ModelConfig
from charlm.models.lm import init_params
from charlm.tasks.lm.scoring import score_ids
from charlm.text.tokenizer import EOS, Vocab

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"
TARGET = 1.0


def held_out_ids(corpus: Path | None) -> tuple[np.ndarray, int]:
    """The id stream of the last 10% of the corpus (its vocabulary from the whole text), and V."""
    if corpus is None:
        return np.random.default_rng(0).integers(0, 67, 111_540), 67
    text = corpus.read_text(encoding="utf-8")
    vocab = Vocab(sorted(set(text)))
    tail = text[int(len(text) * 0.9):]
    return np.concatenate([[EOS], vocab.encode(tail), [EOS]]).astype(vocab.id_dtype), vocab.size


def timed(fn, repeats: int = 1):
    """(result, best wall time over `repeats` runs)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def torch_chars_per_s(ids: np.ndarray, V: int, H: int, layers: int, streams: int, chunk: int) -> float:
    import torch

    lstm = torch.nn.LSTM(V, H, num_layers=layers)
    head = torch.nn.Linear(H, V)
    n = (len(ids) - 1) // streams * streams
    x = torch.from_numpy(ids[:n].astype(np.int64)).view(streams, -1).T.contiguous()  # (T, B)
    y = torch.from_numpy(ids[1:n + 1].astype(np.int64)).view(streams, -1).T.contiguous()
    with torch.inference_mode():
        def run():
            state, total = None, 0.0
            for s in range(0, x.shape[0], chunk):
                out, state = lstm(torch.nn.functional.one_hot(x[s:s + chunk], V).float(), state)
                logits = head(out)  # (T, B, V)
                total += torch.nn.functional.cross_entropy(logits.reshape(-1, V), y[s:s + chunk].reshape(-1),
                                                           reduction="sum").item()
            return total
        _, seconds = timed(run)
    return n / seconds


def match_torch_threads(torch) -> None:
    """Give torch the thread count numpy's BLAS is limited to by the environment (like for like)."""
    for name in THREAD_VARIABLES:
        if os.environ.get(name, "").isdigit():
            torch.set_num_threads(int(os.environ[name]))
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="default: tinyshakespeare if present, else random ids")
    parser.add_argument("--exact-chars", type=int, default=20_000,
                        help="characters scored in exact mode (one stream is slow; a prefix is enough)")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--burn-in", type=int, default=128, help="as `charlm perplexity --burn-in`")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per measurement; the best is reported (the machine is shared)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    corpus = args.corpus or (DEFAULT_CORPUS if DEFAULT_CORPUS.exists() else None)
    ids, V = held_out_ids(corpus)
    cfg = ModelConfig("lstm", V, args.hidden, layers=args.layers)
    params = init_params(cfg, np.random.default_rng(0))
    print(f"LSTM {args.hidden}x{args.layers}, V={V}, {len(ids) - 1:,} characters "
          f"({'held-out tail of ' + corpus.name if corpus else 'random ids'}), best of {args.repeats} runs")

    exact, seconds = timed(lambda: score_ids(params, cfg, ids[:args.exact_chars + 1]), args.repeats)
    print(f"exact (1 stream):  charlm {exact.n_scored / seconds:>10,.0f} chars/s "
          f"({exact.n_scored:,} chars, {exact.nats_per_char:.4f} nats/char)")
    fast, seconds = timed(lambda: score_ids(params, cfg, ids, streams=args.streams, burn_in=args.burn_in),
                          args.repeats)
    ours = fast.n_scored / seconds
    line = (f"--streams {args.streams} --burn-in {args.burn_in}: charlm {ours:>10,.0f} chars/s "
            f"({fast.nats_per_char:.4f} nats/char)")
    try:
        import torch
    except ImportError:
        print(line)
        print("torch not importable: no ratio")
        return 0
    match_torch_threads(torch)
    theirs = max(torch_chars_per_s(ids, V, args.hidden, args.layers, args.streams, 256)
                 for _ in range(args.repeats))
    ratio = ours / theirs
    print(f"{line} | torch {torch.__version__} ({torch.get_num_threads()} threads) batched forward "
          f"{theirs:>10,.0f} chars/s | ratio {ratio:.2f}x (target >= {TARGET}x)")
    print("PASS" if ratio >= TARGET else f"FAIL: {ratio:.2f}x < {TARGET}x")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
