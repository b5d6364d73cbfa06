"""Benchmark corpus preparation: a cold `prepare_corpus` of a ~100 MB file, then a warm (cached) one, per --eos mode.

Each run is a fresh subprocess that reports its own wall time and peak RSS. Targets: cold
<= 15 s and peak RSS <= 500 MB. Exits 1 if a target is missed.

    flock /tmp/charlm-bench.lock .venv/bin/python bench/prepare.py [--corpus FILE | --synthetic] [--size-mb 100]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COLD_SECONDS_TARGET = 15.0
PEAK_RSS_MB_TARGET = 500.0
_DEFAULT_SEED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"

# Runs in the child: prepare once, report seconds and this process's peak RSS (ru_maxrss is KiB on Linux).
_CHILD = """
import json, resource, sys, time
from charlm.text.cache import prepare_corpus
start = time.perf_counter()
corpus = prepare_corpus(sys.argv[1], cache_dir=sys.argv[2], eos_mode=sys.argv[3])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "n_ids": len(corpus.ids), "vocab": corpus.vocab.size, "dtype": str(corpus.ids.dtype)}))
"""


def seed_lines(corpus: Path | None, rng: np.random.Generator) -> list[str]:
    """Lines to build the big file from: a real corpus if given, else synthetic words with some non-ASCII."""
    if corpus is not None:
        lines = corpus.read_text(encoding="utf-8").splitlines()
        if any(line.strip() for line in lines):
            return lines
        sys.exit(f"{corpus} has no text to build the benchmark corpus from")
    syllables = np.array(["the", "an", "ing", "or", "qu", "st", "el", "ra", "mo", "ve", "ß", "é", "ñ", "ø",
                          "при", "вет", "中", "文", "ω", "λ", "🙂", "—"])
    lines = []
    for _ in range(20_000):
        words = ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(rng.integers(3, 12))]
        lines.append(" ".join(words).capitalize() + rng.choice([".", ",", "!", "?", ";"]))
    return lines


def write_corpus(path: Path, lines: list[str], size_bytes: int, rng: np.random.Generator) -> int:
    """Write shuffled copies of `lines` until the file holds at least size_bytes; returns its size."""
    written = 0
    with open(path, "wb") as f:
        while written < size_bytes:
            block = ("\n".join(lines[i] for i in rng.permutation(len(lines))) + "\n").encode("utf-8")
            written += f.write(block)
    return written


def run_child(corpus: Path, cache_dir: Path, eos_mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(corpus), str(cache_dir), eos_mode], capture_output=True,
                          text=True)
    if done.returncode:
        sys.exit(f"prepare_corpus failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="seed text (default: ../shared/corpora/tinyshakespeare.txt "
                                                     "if present, else synthetic)")
    parser.add_argument("--synthetic", action="store_true", help="ignore --corpus and use synthetic text")
    parser.add_argument("--eos", default="file,lines,paragraphs", help="comma-separated document modes to time")
    parser.add_argument("--size-mb", type=float, default=100.0, help="size of the generated file in MB")
    args = parser.parse_args()
    seed_corpus = args.corpus or (_DEFAULT_SEED_CORPUS if _DEFAULT_SEED_CORPUS.exists() else None)
    if args.synthetic:
        seed_corpus = None
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory(prefix="charlm-bench-") as tmp:
        corpus, cache_dir = Path(tmp) / "big.txt", Path(tmp) / "cache"
        start = time.perf_counter()
        size = write_corpus(corpus, seed_lines(seed_corpus, rng), int(args.size_mb * 1e6), rng)
        print(f"generated {size / 1e6:.1f} MB from {seed_corpus or 'synthetic text'} "
              f"in {time.perf_counter() - start:.1f} s")
        results = {mode: (run_child(corpus, cache_dir, mode), run_child(corpus, cache_dir, mode))
                   for mode in args.eos.split(",")}

    misses = []
    for mode, (cold, warm) in results.items():
        for name, result in (("cold", cold), ("warm", warm)):
            print(f"--eos {mode:<10} {name}: {result['seconds']:6.2f} s, peak RSS {result['peak_rss_mb']:4.0f} MB, "
                  f"{result['n_ids']:,} ids ({result['dtype']}), vocabulary {result['vocab']}")
        if cold["seconds"] > COLD_SECONDS_TARGET:
            misses.append(f"--eos {mode} cold {cold['seconds']:.1f} s > {COLD_SECONDS_TARGET} s")
        peak = max(cold["peak_rss_mb"], warm["peak_rss_mb"])
        if peak > PEAK_RSS_MB_TARGET:
            misses.append(f"--eos {mode} peak RSS {peak:.0f} MB > {PEAK_RSS_MB_TARGET} MB")
    print("FAIL: " + "; ".join(misses) if misses else
          f"PASS: cold <= {COLD_SECONDS_TARGET} s and peak RSS <= {PEAK_RSS_MB_TARGET} MB in every mode")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
