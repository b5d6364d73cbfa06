"""Quality benchmark: the best validation loss `charlm train` reaches in a time budget.

One corpus (--corpus): train on the first 90%, validate on the last 10% (`--val-file`),
print the curve of validation loss against training seconds and the best checkpoint's final validation loss
(nats/char; exact or parallel streams, as `charlm train` chose and the output says).

    python bench/quality.py --corpus ../shared/corpora/tinyshakespeare.txt --time 5m [-- extra train flags]

The suite (the default; `make bench` runs it): four kinds of corpus, each trained with the recipe (no flags)
and with the defaults charlm had before the recipe (given as explicit flags), and the PyTorch peer on the
file-mode corpora when torch and the peer script are there:

    python bench/quality.py --suite --budgets 5m,2m [--corpora tinyshakespeare,words] [--arms recipe,defaults]
        [--arms recipe,variant --variant "--min-lr-ratio 0"] [--repeats 3]
        [--peer ../shared/bench/torch_charlm.py] [--results results.jsonl]

| corpus | mode | split |
| tinyshakespeare | file | last 10% |
| words | lines | 1,000 random lines held out (random.Random(1234).shuffle of the stripped non-empty lines) |
| python-stdlib | file | last 10% (`charlm corpus get python-stdlib`) |
| surnames | lines | as words, on the names of names-by-language.tsv |

Each run's record (corpus, budget, arm, repeat, best loss, steps, epochs, wall seconds of the whole invocation,
the recipe line) is appended to --results as JSON; the table at the end is in the form of docs/benchmarks.md. Identical
runs differ by up to about 0.03 nats on a 2-core machine (the steps a budget buys follow the machine's
speed), so a difference at that level needs --repeats: the arms then take turns and each cell is a mean.
"""

import argparse
import importlib.util
import json
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
TORCH_PEER = SHARED / "bench" / "torch_charlm.py"
HELD_OUT_LINES = 1000
SPLIT_SEED = 1234
# The peer's configuration of the issue: PyTorch LSTM 256x2, 32 streams x 100 characters; its --seconds is the
# budget less this many seconds for its closing evaluation.
PEER_FLAGS = ["--batch", "32", "--seq", "100", "--hidden", "256", "--layers", "2"]
PEER_EVAL_SECONDS = 10.0
SUITE = ("tinyshakespeare", "words", "python-stdlib", "surnames")


def defaults_before_recipe(seconds: float) -> list[str]:
    """The flags that reproduce charlm's character defaults before the recipe: LSTM 2 layers, one-hot input,
    Adam lr 1e-2 with 30 warm-up steps and a cosine decay to a tenth of it, clip 1, 64 x 32; 384 units with
    dropout 0.2 from a 7.5-minute budget, else 256 with dropout 0.1; no weight decay, no patience."""
    hidden, dropout = (384, 0.2) if seconds >= 450 else (256, 0.1)
    return ["--cell", "lstm", "--layers", "2", "--embed", "0", "--hidden", str(hidden), "--dropout", str(dropout),
            "--seq-len", "32", "--batch", "64", "--optimizer", "adam", "--lr", "0.01", "--clip", "1",
            "--warmup", "30", "--min-lr-ratio", "0.1", "--weight-decay", "0", "--patience", "0"]


def split_file(text: str, workdir: Path) -> tuple[Path, Path]:
    cut = int(len(text) * 0.9)
    train, val = workdir / "train.txt", workdir / "val.txt"
    train.write_text(text[:cut], encoding="utf-8")
    val.write_text(text[cut:], encoding="utf-8")
    return train, val


def split_lines(lines: list[str], workdir: Path) -> tuple[Path, Path]:
    lines = [line.strip() for line in lines if line.strip()]
    random.Random(SPLIT_SEED).shuffle(lines)
    train, val = workdir / "train.txt", workdir / "val.txt"
    val.write_text("\n".join(lines[:HELD_OUT_LINES]) + "\n", encoding="utf-8")
    train.write_text("\n".join(lines[HELD_OUT_LINES:]) + "\n", encoding="utf-8")
    return train, val


def prepare(name: str, workdir: Path) -> tuple[Path, Path, str, Path]:
    """-> (train file, validation file, mode, the whole file for the peer)."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpora = SHARED / "corpora"
    if name == "tinyshakespeare":
        whole = corpora / "tinyshakespeare.txt"
        return *split_file(whole.read_text(encoding="utf-8"), workdir), "file", whole
    if name == "python-stdlib":
        whole = workdir / "python-stdlib.txt"
        subprocess.run([sys.executable, "-m", "charlm", "corpus", "get", "python-stdlib", "-o", str(whole)],
                       check=True, capture_output=True)
        return *split_file(whole.read_text(encoding="utf-8"), workdir), "file", whole
    if name == "words":
        lines = (corpora / "words.txt").read_text(encoding="utf-8").splitlines()
    elif name == "surnames":
        lines = [line.split("\t", 1)[1] for line in
                 (corpora / "names-by-language.tsv").read_text(encoding="utf-8").splitlines() if "\t" in line]
    else:
        raise SystemExit(f"unknown suite corpus {name!r} (one of {', '.join(SUITE)})")
    train, val = split_lines(lines, workdir)
    return train, val, "lines", train


def run_charlm(train: Path, val: Path, budget: str, out: Path, flags: list[str]) -> dict:
    """One `charlm train` invocation; its final record plus the evaluations, the recipe line and wall time."""
    cmd = [sys.executable, "-m", "charlm", "train", str(train), "--val-file", str(val), "--time", budget,
           "--out", str(out), "--json", "--quiet", *flags]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"charlm train failed ({proc.returncode}):\n{proc.stderr}")
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    final = dict(records[-1], wall_seconds=round(wall, 1))
    final["evaluations"] = [r for r in records if "val_loss" in r]
    recipe = next((r for r in records if "recipe" in r), {})
    final["recipe"], final["reasons"] = recipe.get("recipe"), recipe.get("reasons", [])
    return final


def run_peer(peer: Path, whole: Path, seconds: float) -> dict:
    cmd = [sys.executable, str(peer), "--corpus", str(whole), *PEER_FLAGS,
           "--seconds", str(seconds - PEER_EVAL_SECONDS)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the peer failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"best_val_loss": result["val_loss"], "steps": result.get("steps"), "peer": result}


def peer_available(peer: Path | None) -> bool:
    """The peer needs its script (from ../shared) and torch in this venv, installed for benchmarks only."""
    return bool(peer) and peer.is_file() and importlib.util.find_spec("torch") is not None


def seconds_of(budget: str) -> float:
    from charlm.training.options import parse_duration

    return parse_duration(budget)


def suite(args) -> int:
    corpora = args.corpora.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in corpora:
            train, val, mode, whole = prepare(name, Path(tmp) / name)
            for budget in args.budgets.split(","):
                # Arms take turns (A B A B ...), so a drift of the machine's speed falls on each of them.
                for repeat, arm in ((r, a) for r in range(args.repeats) for a in args.arms.split(",")):
                    if arm == "peer":
                        if mode != "file" or not peer_available(args.peer):
                            continue
                        record = run_peer(args.peer, whole, seconds_of(budget))
                    else:
                        flags = (defaults_before_recipe(seconds_of(budget)) if arm == "defaults" else
                                 shlex.split(args.variant) if arm == "variant" else [])
                        if mode == "lines":
                            flags += ["--eos", "lines"]
                        out = Path(tmp) / name / f"run-{arm}-{budget}-{repeat}"
                        record = run_charlm(train, val, budget, out, flags + args.extra)
                    record.update(corpus=name, mode=mode, budget=budget, arm=arm, repeat=repeat,
                                  extra=args.extra, date=time.strftime("%Y-%m-%d"))
                    rows.append(record)
                    print(f"{name:16} {budget:>4} {arm:9} {record['best_val_loss']:.4f}  "
                          f"steps {record.get('steps')}  epochs {record.get('epochs')}  "
                          f"chars/s {record.get('chars_per_sec') or 0:,.0f}  wall {record.get('wall_seconds')}s  "
                          f"{record.get('recipe') or ''}", flush=True)
                    if args.results:
                        with open(args.results, "a", encoding="utf-8") as f:
                            f.write(json.dumps(record) + "\n")
    print("\n| corpus | mode | budget | " + " | ".join(args.arms.split(",")) + " |")
    print("|---|---|---|" + "---|" * len(args.arms.split(",")))
    for name in corpora:
        for budget in args.budgets.split(","):
            cells = []
            for arm in args.arms.split(","):
                losses = [r["best_val_loss"] for r in rows
                          if (r["corpus"], r["budget"], r["arm"]) == (name, budget, arm)]
                cells.append(_cell(losses))
            mode = next(r["mode"] for r in rows if r["corpus"] == name)
            print(f"| {name} | {mode} | {budget} | " + " | ".join(cells) + " |")
    return 0


def _cell(losses: list[float]) -> str:
    """One arm's best losses: the value, or with repeats their mean and range."""
    if not losses:
        return "—"
    if len(losses) == 1:
        return f"{losses[0]:.3f}"
    return f"{sum(losses) / len(losses):.3f} (n={len(losses)}, {min(losses):.3f}-{max(losses):.3f})"


def single(args) -> int:
    if not args.corpus.exists():
        print(f"corpus not found: {args.corpus} (pass --corpus)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        train, val = split_file(args.corpus.read_text(encoding="utf-8"), workdir)
        print("$ charlm train train.txt --val-file val.txt --time", args.time, *args.extra, flush=True)
        final = run_charlm(train, val, args.time, workdir / "run", args.extra)
    if final["recipe"]:
        print(final["recipe"])
    print(f"{'seconds':>8} {'step':>6} {'epoch':>6} {'val nats':>9} {'val bpc':>8}")
    for r in final["evaluations"]:
        print(f"{r['train_seconds']:8.0f} {r['step']:6d} {r['epoch']:6.2f} {r['val_loss']:9.4f} {r['val_bpc']:8.3f}")
    print(f"best val loss ({final['best_val_mode']}): {final['best_val_loss']:.4f} nats/char "
          f"({final['best_val_bpc']:.3f} bits/char) after {final['steps']} steps, {final['train_seconds']:.0f}s "
          f"training, {final['wall_seconds']:.0f}s in all, {final['chars_per_sec']:,.0f} chars/s")
    if args.target is not None and final["best_val_loss"] > args.target:
        print(f"FAIL: above the target {args.target}")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="one corpus (file mode) instead of the suite")
    parser.add_argument("--time", default="5m", help="one corpus: training budget passed to charlm train --time")
    parser.add_argument("--target", type=float, default=None, help="one corpus: fail (exit 1) above this val loss")
    parser.add_argument("--suite", action="store_true", help="the suite of corpora (the default without --corpus)")
    parser.add_argument("--corpora", default=",".join(SUITE), help="suite: which corpora")
    parser.add_argument("--budgets", default="5m,2m", help="suite: the time budgets")
    parser.add_argument("--arms", default="defaults,recipe,peer", help="suite: defaults, recipe, variant and/or peer")
    parser.add_argument("--variant", default="",
                        help="suite: the flags of the arm 'variant' (the recipe with these flags given)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="suite: runs of each arm, taking turns; the table gives their mean and range")
    parser.add_argument("--peer", type=Path, default=TORCH_PEER if TORCH_PEER.exists() else None,
                        help="suite: the PyTorch peer trainer (needs torch)")
    parser.add_argument("--results", type=Path, help="suite: append each run's record to this JSON-lines file")
    parser.add_argument("extra", nargs="*", help="extra flags for charlm train (after --)")
    args = parser.parse_args()
    return single(args) if args.corpus and not args.suite else suite(args)


if __name__ == "__main__":
    sys.exit(main())
