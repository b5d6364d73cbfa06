"""Training throughput of the numpy engine (and of PyTorch, when importable) on this machine.

Run only under the shared lock, one benchmark at a time:
    flock /tmp/charlm-bench.lock .venv/bin/python bench/engine.py [--configs lstm-512x2,...] [--steps N]

Each configuration runs in its own process (so peak RSS is per configuration), `--rounds` times, charlm and
PyTorch taking turns to go first; the ratio is the median of the rounds' ratios. In each: a warm-up, then `--steps`
timed training steps of forward + backward + Adam update over a (T, B) chunk of random ids with the state
carried. chars/s = B * T / median step time. GFLOP/s counts the model's dense matrix products (the one-hot
input counted as a V-wide product, 3 products per weight for forward and backward), so a figure is
comparable across engines; "% peak" is against the float32 2048x2048 matmul rate measured here.
PyTorch runs the same sizes with torch.nn.LSTM/GRU/RNN, a 64-wide embedding, Adam and 2 threads.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from machine import matmul_peak, peak_rss_mb

CONFIGS = {  # name -> (cell, hidden, layers, batch, seq_len)
    "lstm-512x2": ("lstm", 512, 2, 64, 128),
    "lstm-256x2": ("lstm", 256, 2, 64, 128),
    "gru-512x2": ("gru", 512, 2, 64, 128),
    "rnn-512x2": ("rnn", 512, 2, 64, 128),
    "lstm-1024x1": ("lstm", 1024, 1, 32, 128),
}
VOCAB = 65
TORCH_EMBED = 64


def model_flops(cell, hidden, layers, batch, seq_len, vocab=VOCAB, first_input=VOCAB):
    """Dense matrix-product FLOPs of one training step (forward + both backward products per weight)."""
    gates = {"rnn": 1, "gru-simple": 2, "gru": 3, "lstm": 4}[cell] * hidden
    n = batch * seq_len
    per_forward = 0
    for layer in range(layers):
        width_in = first_input if layer == 0 else hidden
        per_forward += 2 * n * (width_in + hidden) * gates
    per_forward += 2 * n * hidden * vocab
    return 3 * per_forward


def run_charlm(cell, hidden, layers, batch, seq_len, warmup, steps):
    """Step times (s) of the numpy engine with the one-hot (row-gather) input, a workspace and Adam."""
    import numpy as np

    from charlm.engine.optim import make_optimizer
    from charlm.models.config import ModelConfig
    from charlm.models.lm import init_params, init_state, loss_and_grads

    cfg = ModelConfig(cell=cell, vocab_size=VOCAB, hidden=hidden, layers=layers)
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    opt = make_optimizer("adam", params)
    ids = rng.integers(0, VOCAB, (seq_len + 1, batch)).astype(np.int32)
    state, ws = init_state(cfg, batch), {}
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        _, grads, state = loss_and_grads(params, cfg, ids[:-1], ids[1:], state, workspace=ws)
        opt.step(params, grads, 1e-3)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def run_torch(cell, hidden, layers, batch, seq_len, warmup, steps):
    """Step times (s) of the same network in PyTorch (CPU, 2 threads, 64-wide embedding, Adam)."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    rnn_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    embed = torch.nn.Embedding(VOCAB, TORCH_EMBED)
    rnn = rnn_class(TORCH_EMBED, hidden, layers)
    head = torch.nn.Linear(hidden, VOCAB)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    ids = torch.randint(0, VOCAB, (seq_len + 1, batch))
    x, y = ids[:-1], ids[1:]
    state = None
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        out, state = rnn(embed(x), state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def worker(engine, name, warmup, steps):
    cell, hidden, layers, batch, seq_len = CONFIGS[name]
    run = run_charlm if engine == "charlm" else run_torch
    times = run(cell, hidden, layers, batch, seq_len, warmup, steps)
    median = statistics.median(times)
    first_input = TORCH_EMBED if engine == "torch" else VOCAB
    flops = model_flops(cell, hidden, layers, batch, seq_len, first_input=first_input)
    return {
        "engine": engine, "config": name, "steps": steps, "median_step_s": median,
        "best_step_s": min(times), "chars_per_s": batch * seq_len / median, "gflops": flops / median / 1e9,
        "gflop_per_step": flops / 1e9,
        "peak_rss_mb": peak_rss_mb(),
    }


def torch_available():
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return probe.returncode == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="1 warm-up and 2 timed steps")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure every configuration this many times, alternating which engine goes first; "
                             "the median is reported (a shared machine's speed drifts between runs)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if importable")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 1, 2
    if args.worker:
        engine, name = args.worker.split(":")
        print(json.dumps(worker(engine, name, args.warmup, args.steps)))
        return
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    engines = ["charlm"] + ([] if args.no_torch or not torch_available() else ["torch"])
    peak = matmul_peak()
    rows, ratios, spread = [], {}, {}
    for name in names:
        runs = {engine: [] for engine in engines}
        for round_ in range(args.rounds):
            for engine in engines if round_ % 2 == 0 else engines[::-1]:
                cmd = [sys.executable, __file__, "--worker", f"{engine}:{name}", "--warmup", str(args.warmup),
                       "--steps", str(args.steps)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[engine].append(json.loads(done.stdout.strip().splitlines()[-1]))
        for engine in engines:
            row = _median_run(runs[engine])
            row["pct_peak"] = 100 * row["gflops"] / peak
            rows.append(row)
            if not args.json:
                print(f"{name:12s} {engine:6s} {row['chars_per_s']:9.0f} chars/s  "
                      f"{row['gflops']:6.1f} GFLOP/s "
                      f"({row['pct_peak']:4.1f}% of peak)  step {row['median_step_s'] * 1e3:7.1f} ms "
                      f"(best {row['best_step_s'] * 1e3:7.1f})  peak RSS {row['peak_rss_mb']:6.0f} MB",
                      flush=True)
        if "torch" in runs:
            pairs = zip(runs["charlm"], runs["torch"], strict=True)
            per_round = [c["chars_per_s"] / t["chars_per_s"] for c, t in pairs]
            ratios[name], spread[name] = statistics.median(per_round), (min(per_round), max(per_round))
    if args.json:
        report = {"matmul_peak_gflops": peak, "rounds": args.rounds, "results": rows, "charlm_over_torch": ratios,
                  "charlm_over_torch_range": spread}
        print(json.dumps(report, indent=2))
        return
    print(f"numpy float32 matmul peak (2048x2048): {peak:.1f} GFLOP/s; medians of {args.rounds} round(s)")
    for name, ratio in ratios.items():
        low, high = spread[name]
        print(f"{name:12s} charlm/torch = {ratio:.2f}x (rounds {low:.2f}-{high:.2f}x)")


def _median_run(runs: list[dict]) -> dict:
    """The run with the median speed among one engine's rounds (its row is reported whole), plus every
    round's chars/s."""
    ordered = sorted(runs, key=lambda r: r["chars_per_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["rounds_chars_per_s"] = [r["chars_per_s"] for r in runs]
    return row


if __name__ == "__main__":
    main()
