"""Scoring speed: characters per second for exact perplexity and for `--streams 64`, LSTM 256x2 and 512x2.

charlm's `score_ids` (numpy) side by side with a batched PyTorch forward of the same model (one-hot
input, 2-layer LSTM, linear head, cross-entropy; 64 contiguous streams, 256 steps per call, state carried)
when `import torch` works, and with onnxruntime running charlm's own ONNX export of the model the same way
when onnx and onnxruntime are installed (the dev extra). The text is the held-out tail (last 10%, 111,539
characters) of tinyshakespeare when present, else random ids. Random weights: speed does not depend on them.
Target: `--streams 64` >= 1.0x each peer, at both widths, on the same work: `--burn-in 0` (the peers read
no burn-in; the default `--burn-in 128` costs its 128 extra steps per stream, also printed).

    flock /tmp/charlm-bench.lock .venv/bin/python bench/perplexity.py [--corpus FILE] [--burn-in 128]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from charlm.engine.rows import blas_threads
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params
from charlm.tasks.lm.scoring import score_ids
from charlm.text.tokenizer import EOS, Vocab

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


def onnx_chars_per_s(params, cfg, ids: np.ndarray, streams: int, chunk: int, threads: int) -> float | None:
    """onnxruntime running charlm's own export of the same model (`charlm.export.onnx_graph`): the same 64
    streams in chunks of 256 steps, the state carried through h0/c0 -> hn/cn, the targets' log-probabilities
    summed. None when onnx or onnxruntime is not installed."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        return None
    from charlm.export.onnx_graph import build_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # the optional state inputs' defaults are by design
    model = build_model(onnx, params, cfg, {})
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    n = (len(ids) - 1) // streams * streams
    x = ids[:n].astype(np.int64).reshape(streams, -1).T.copy()  # (T, B)
    y = ids[1:n + 1].astype(np.int64).reshape(streams, -1).T.copy()

    def run():
        feeds, total = {}, 0.0
        for s in range(0, x.shape[0], chunk):
            log_probs, hn, cn = session.run(["log_probs", "hn", "cn"], {"ids": x[s:s + chunk], **feeds})
            total -= np.take_along_axis(log_probs, y[s:s + chunk, :, None], axis=2).sum()
            feeds = {"h0": hn, "c0": cn}
        return total

    _, seconds = timed(run)
    return n / seconds


def match_torch_threads(torch) -> None:
    """Give torch the thread count numpy's BLAS uses (like for like)."""
    torch.set_num_threads(blas_threads())


def measure(ids, V: int, hidden: int, layers: int, args, torch) -> bool:
    """One size's rows: charlm exact and --streams, PyTorch's batched forward, onnxruntime on charlm's export;
    whether charlm's --streams figure reaches TARGET against each peer measured."""
    cfg = ModelConfig("lstm", V, hidden, layers=layers)
    params = init_params(cfg, np.random.default_rng(0))
    print(f"LSTM {hidden}x{layers}, V={V}, {len(ids) - 1:,} characters, best of {args.repeats} runs")
    exact, seconds = timed(lambda: score_ids(params, cfg, ids[:args.exact_chars + 1]), args.repeats)
    print(f"  exact (1 stream)            charlm {exact.n_scored / seconds:>10,.0f} chars/s "
          f"({exact.n_scored:,} chars, {exact.nats_per_char:.4f} nats/char)")
    for burn_in in (args.burn_in, 0):
        fast, seconds = timed(lambda b=burn_in: score_ids(params, cfg, ids, streams=args.streams, burn_in=b),
                              args.repeats)
        ours = fast.n_scored / seconds
        print(f"  --streams {args.streams} --burn-in {burn_in:<4} charlm {ours:>10,.0f} chars/s "
              f"({fast.nats_per_char:.4f} nats/char)")
    peers = {}
    if torch is not None:
        peers[f"torch {torch.__version__} batched forward"] = max(
            torch_chars_per_s(ids, V, hidden, layers, args.streams, 256) for _ in range(args.repeats))
    onnx_rate = max((onnx_chars_per_s(params, cfg, ids, args.streams, 256, blas_threads())
                     for _ in range(args.repeats)), key=lambda r: r or 0.0)
    if onnx_rate is not None:
        peers["onnxruntime, charlm's export"] = onnx_rate
    passed = True
    for name, theirs in peers.items():
        ratio = ours / theirs
        passed &= ratio >= TARGET
        print(f"  {name:<28}{theirs:>17,.0f} chars/s | charlm --burn-in 0 {ratio:.2f}x (target >= {TARGET}x)")
    if not peers:
        print("  neither torch nor onnxruntime importable: no ratio")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="default: tinyshakespeare if present, else random ids")
    parser.add_argument("--exact-chars", type=int, default=20_000,
                        help="characters scored in exact mode (one stream is slow; a prefix is enough)")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--burn-in", type=int, default=128, help="as `charlm perplexity --burn-in`")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per measurement; the best is reported (the machine is shared)")
    parser.add_argument("--hidden", type=lambda v: [int(h) for h in v.split(",")], default=[256, 512],
                        help="widths to measure, comma-separated")
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    corpus = args.corpus or (DEFAULT_CORPUS if DEFAULT_CORPUS.exists() else None)
    ids, V = held_out_ids(corpus)
    try:
        import torch

        match_torch_threads(torch)
    except ImportError:
        torch = None
    print(f"{'held-out tail of ' + corpus.name if corpus else 'random ids'}; numpy's BLAS and the peers at "
          f"{blas_threads()} threads")
    passed = all([measure(ids, V, hidden, args.layers, args, torch) for hidden in args.hidden])
    print("PASS" if passed else "FAIL: charlm --streams below a peer")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
