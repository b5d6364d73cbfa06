"""Data-parallel speed on this machine: one process with 2 BLAS threads against 2 MPI ranks with 1 each.

Run only under the shared lock, one benchmark at a time:
    flock /tmp/charlm-bench.lock .venv/bin/python bench/mpi.py [--chars N] [--rounds R] [--configs 256x128,...]

Each configuration (LSTM 256x2 and 512x2; batch 64; seq 32 and 128) trains with real `charlm train` runs on
tinyshakespeare for --chars characters (steps of 64 x seq) without evaluation: once as one process (numpy's
default 2 BLAS threads), once as `--procs 2` (the bundled mpiexec, 1 thread per rank), taking turns to go
first, --rounds times. The figure is chars/s of training steps as `charlm train --json` reports it (the
median over rounds), and the time per step the 2-rank run spent in its Allreduce (waiting for the other
rank included).

Then a scaling model, on paper: P ranks over a network train the same global batch of 64 streams, so a
rank's step costs its compute on 64 / P streams plus a ring Allreduce of 4 bytes x parameters:
2 (P - 1) / P x bytes / bandwidth + 2 (P - 1) x latency. A rank's compute is not t1 / P: a step has a
per-time-step cost that does not shrink with fewer streams, so it is measured here as a line,
compute(b) = fixed + per_stream x b, from engine steps on b = 8 and b = 32 streams with one BLAS thread.
The table gives the speed-up over one process (t1, measured above) at P = 2 ... 64 and the P past which
adding ranks no longer pays (the last doubling that still gained 10%), for two networks.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_model, vector_extensions

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"
CONFIGS = [(256, 32), (256, 128), (512, 32), (512, 128)]  # (hidden, seq_len), LSTM x2, batch 64
BATCH = 64
VOCAB = 65
NETWORKS = {"10 GbE (1.25 GB/s, 50 us)": (1.25e9, 50e-6), "100 Gb/s InfiniBand (12.5 GB/s, 2 us)": (12.5e9, 2e-6)}
RANKS = [1, 2, 4, 8, 16, 32, 64]
# A doubling of the ranks that speeds a step up by less than this no longer pays for its machines.
WORTH_A_DOUBLING = 1.10


def lstm_params(hidden: int, layers: int = 2, vocab: int = VOCAB) -> int:
    total, width = 0, vocab
    for _ in range(layers):
        total += 4 * hidden * (width + hidden + 1)
        width = hidden
    return total + hidden * vocab + vocab


def run(corpus: Path, workdir: Path, hidden: int, seq_len: int, steps: int, procs: int) -> dict:
    out = workdir / f"run-{hidden}-{seq_len}-{procs}"
    cmd = [sys.executable, "-m", "charlm", "train", str(corpus), "--out", str(out), "--cell", "lstm", "--hidden",
           str(hidden), "--layers", "2", "--batch", str(BATCH), "--seq-len", str(seq_len), "--steps", str(steps),
           "--eval-every", str(10 * steps), "--val-fraction", "0.01", "--json", "--quiet"]
    if procs > 1:
        cmd += ["--procs", str(procs)]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"charlm train failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    done = json.loads(proc.stdout.splitlines()[-1])
    return done


ENGINE_STEPS = """
import json, sys, time
import numpy as np
from charlm.engine.optim import make_optimizer
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state, loss_and_grads
hidden, seq_len, streams = map(int, sys.argv[1:4])
cfg = ModelConfig(cell="lstm", vocab_size=65, hidden=hidden, layers=2, dropout=0.1)
rng = np.random.default_rng(0)
params = init_params(cfg, rng)
opt = make_optimizer("adam", params)
ids = rng.integers(0, 65, (seq_len + 1, streams)).astype(np.int32)
state, ws, times = init_state(cfg, streams), {}, []
for i in range(10):
    start = time.perf_counter()
    _, grads, state = loss_and_grads(params, cfg, ids[:-1], ids[1:], state, rng=rng, workspace=ws)
    opt.step(params, grads, 1e-3)
    times.append(time.perf_counter() - start)
print(json.dumps(float(np.median(times[3:]))))
"""


def rank_compute_line(hidden: int, seq_len: int) -> tuple[float, float]:
    """(fixed, per_stream) seconds of one rank's training step on b streams with one BLAS thread."""
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}, "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    small, large = (json.loads(subprocess.run([sys.executable, "-c", ENGINE_STEPS, str(hidden), str(seq_len),
                                               str(b)], capture_output=True, text=True, env=env, check=True).stdout)
                    for b in (8, 32))
    per_stream = (large - small) / 24
    return small - 8 * per_stream, per_stream


def speedup(t1: float, line: tuple[float, float], params: int, ranks: int, bandwidth: float,
            latency: float) -> float:
    """One process's step time over P ranks' on the same global batch (see the module docstring)."""
    if ranks == 1:
        return 1.0
    fixed, per_stream = line
    allreduce = 2 * (ranks - 1) / ranks * 4 * params / bandwidth + 2 * (ranks - 1) * latency
    return t1 / (fixed + per_stream * BATCH / ranks + allreduce)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--chars", type=int, default=300_000, help="characters trained per run")
    parser.add_argument("--configs", default=",".join(f"{h}x{t}" for h, t in CONFIGS),
                        help="hidden x seq_len pairs, e.g. 256x128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.corpus.exists():
        print(f"corpus not found: {args.corpus} (pass --corpus)", file=sys.stderr)
        return 2
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {' '.join(vector_extensions())}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for hidden, seq_len in (map(int, c.split("x")) for c in args.configs.split(",")):
            steps = max(10, args.chars // (BATCH * seq_len))
            one, two, share = [], [], []
            for r in range(args.rounds):
                for procs in ((1, 2) if r % 2 == 0 else (2, 1)):
                    done = run(args.corpus, Path(tmp), hidden, seq_len, steps, procs)
                    if procs == 1:
                        one.append(done["chars_per_sec"])
                    else:
                        two.append(done["chars_per_sec"])
                        step = BATCH * seq_len / done["chars_per_sec"]
                        share.append((done["allreduce_seconds_per_step"], step))
            ar, step = statistics.median(s[0] for s in share), statistics.median(s[1] for s in share)
            rows.append({"config": f"LSTM {hidden}x2, batch {BATCH}, seq {seq_len}",
                         "hidden": hidden, "seq_len": seq_len,
                         "one_process": statistics.median(one), "two_ranks": statistics.median(two),
                         "ratio": statistics.median(b / a for a, b in zip(one, two, strict=True)),
                         "ratios": [round(b / a, 3) for a, b in zip(one, two, strict=True)],
                         "allreduce_ms": ar * 1e3, "allreduce_share": ar / step})
            row = rows[-1]
            row["compute_fixed"], row["compute_per_stream"] = rank_compute_line(hidden, seq_len)
            print(f"{row['config']:<34} 1 x 2 threads {row['one_process']:>9,.0f} chars/s | 2 ranks x 1 thread "
                  f"{row['two_ranks']:>9,.0f} chars/s | {row['ratio']:.2f}x (rounds {row['ratios']}) | Allreduce "
                  f"{row['allreduce_ms']:.2f} ms/step = {row['allreduce_share']:.0%} of a step | a rank's step on b "
                  f"streams {row['compute_fixed'] * 1e3:.0f} + {row['compute_per_stream'] * 1e3:.1f} b ms", flush=True)

    print("\nScaling model: speed-up over one process (t1, 2 threads) of P ranks on the same global batch of 64")
    for name, (bandwidth, latency) in NETWORKS.items():
        print(f"\n{name}")
        print(f"{'model':<22} {'params':>9} {'t1 ms':>7} " + " ".join(f"{f'P={p}':>6}" for p in RANKS[1:])
              + "  stops paying after")
        for row in rows:
            params = lstm_params(row["hidden"])
            t1 = BATCH * row["seq_len"] / row["one_process"]
            line = (row["compute_fixed"], row["compute_per_stream"])
            gains = [speedup(t1, line, params, p, bandwidth, latency) for p in RANKS]
            paying = [RANKS[i] for i in range(1, len(RANKS)) if gains[i] / gains[i - 1] >= WORTH_A_DOUBLING]
            stops = (f"beyond {RANKS[-1]}" if paying and paying[-1] == RANKS[-1]
                     else f"P={paying[-1]}" if paying else "P=1")
            label = f"LSTM {row['hidden']}x2 seq {row['seq_len']}"
            print(f"{label:<22} {params:>9,} {t1 * 1e3:>7.1f} "
                  + " ".join(f"{g:>5.1f}x" for g in gains[1:]) + f"  {stops}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
