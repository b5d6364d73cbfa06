"""Quality benchmark: best validation loss that `charlm train` reaches on tinyshakespeare in a time budget.

Train on the first 90% of the corpus, validate on the last 10% (`--val-file`), print the curve of
validation loss against training seconds and the best checkpoint's final validation loss (nats/char;
exact or parallel streams, as `charlm train` chose and the output says).

    python bench/quality.py --corpus ../shared/corpora/tinyshakespeare.txt --time 5m [-- extra train flags]

Targets the default recipe must meet: <= 1.50 nats/char with --time 5m, <= 1.47 with --time 10m (pass
them as --target to fail above them).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"


def split_corpus(corpus: Path, workdir: Path) -> tuple[Path, Path]:
    text = corpus.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    train, val = workdir / "train.txt", workdir / "val.txt"
    train.write_text(text[:cut], encoding="utf-8")
    val.write_text(text[cut:], encoding="utf-8")
    return train, val


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--time", default="5m", help="training budget passed to charlm train --time")
    parser.add_argument("--target", type=float, default=None, help="fail (exit 1) above this val loss")
    parser.add_argument("extra", nargs="*", help="extra flags for charlm train (after --)")
    args = parser.parse_args()
    if not args.corpus.exists():
        print(f"corpus not found: {args.corpus} (pass --corpus)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        train, val = split_corpus(args.corpus, workdir)
        cmd = [sys.executable, "-m", "charlm", "train", str(train), "--val-file", str(val), "--time", args.time,
               "--out", str(workdir / "run"), "--json", "--quiet", *args.extra]
        print("$ charlm train train.txt --val-file val.txt --time", args.time, *args.extra, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    evals = [r for r in records if "val_loss" in r]
    final = records[-1]
    print(f"{'seconds':>8} {'step':>6} {'epoch':>6} {'val nats':>9} {'val bpc':>8}")
    for r in evals:
        print(f"{r['train_seconds']:8.0f} {r['step']:6d} {r['epoch']:6.2f} {r['val_loss']:9.4f} {r['val_bpc']:8.3f}")
    print(f"best val loss ({final['best_val_mode']}): {final['best_val_loss']:.4f} nats/char "
          f"({final['best_val_bpc']:.3f} bits/char) after {final['steps']} steps, {final['train_seconds']:.0f}s, "
          f"{final['chars_per_sec']:,.0f} chars/s")
    if args.target is not None and final["best_val_loss"] > args.target:
        print(f"FAIL: above the target {args.target}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
