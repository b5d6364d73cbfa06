"""Tagging benchmark: truecasing and punctuation restoration on tinyshakespeare, four ways, one budget each.

Train on the first 90% of the corpus's lines, test on the last 10% (`charlm evaluate`'s word-level F1 over
words that are not all lowercase, and F1 per mark):
  (a) the baseline: every word gets its most frequent casing in the training text (unseen words stay
      lowercase);
  (b) a unidirectional tagger, `charlm train --task truecase+punctuate`;
  (c) the same tagger `--bidirectional`;
  (d) `charlm truecase` with the default character language model trained for the same time.
Each model trains for `--time` (5 minutes by default); run it alone, under the shared lock:

    flock /tmp/charlm-bench.lock .venv/bin/python bench/tagging.py [--corpus FILE] [--time 5m]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from charlm.tasks.tagging.tag_metrics import truecase_word_scores
from charlm.tasks.tagging.tagged_text import lowercase

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"
CHARLM = [sys.executable, "-m", "charlm"]


def charlm(*args, stdin=None) -> str:
    done = subprocess.run([*CHARLM, *map(str, args)], input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"charlm {' '.join(map(str, args[:2]))} failed: {done.stderr.strip()}")
    return done.stdout


def split_lines(corpus: Path, workdir: Path) -> tuple[Path, Path, list[str]]:
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    cut = int(len(lines) * 0.9)
    train, test = workdir / "train.txt", workdir / "test.txt"
    train.write_text("\n".join(lines[:cut]) + "\n", encoding="utf-8")
    test.write_text("\n".join(lines[cut:]) + "\n", encoding="utf-8")
    return train, test, lines[cut:]


def most_frequent_casing(train_lines: list[str], test_lines: list[str]) -> dict:
    forms = defaultdict(Counter)
    for line in train_lines:
        for word in line.split():
            forms[lowercase(word)][word] += 1
    restored = [" ".join(forms[w].most_common(1)[0][0] if w in forms else w for w in lowercase(line).split())
                for line in test_lines]
    return truecase_word_scores(test_lines, restored)


def tagger(train: Path, test: Path, budget: str, workdir: Path, bidirectional: bool) -> dict:
    out = workdir / ("bi" if bidirectional else "uni")
    start = time.perf_counter()
    charlm("train", train, "--task", "truecase+punctuate", "--time", budget, "--out", out, "-q",
           *(["--bidirectional"] if bidirectional else []))
    seconds = time.perf_counter() - start
    found = json.loads(charlm("evaluate", out, test, "--json"))
    return {"seconds": seconds, "case": found["heads"]["case"], "punct": found["heads"]["punct"]}


def language_model(train: Path, test_lines: list[str], budget: str, workdir: Path) -> dict:
    out = workdir / "lm"
    charlm("train", train, "--time", budget, "--out", out, "-q")
    start = time.perf_counter()
    restored = json.loads(charlm("truecase", out, "--json", "-q", stdin="\n".join(lowercase(s) for s in test_lines)))
    return {"case": truecase_word_scores(test_lines, [r["text"] for r in restored]),
            "truecase_seconds": time.perf_counter() - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--time", default="5m", help="training budget of each model (charlm train --time)")
    args = parser.parse_args()
    if not args.corpus.exists():
        print(f"corpus not found: {args.corpus} (pass --corpus)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        train, test, test_lines = split_lines(args.corpus, workdir)
        train_lines = train.read_text(encoding="utf-8").splitlines()
        results = {"baseline": {"case": most_frequent_casing(train_lines, test_lines)}}
        print(f"(a) most frequent casing: word F1 {results['baseline']['case']['f1']:.4f}", flush=True)
        for name, bidirectional in (("unidirectional", False), ("bidirectional", True)):
            results[name] = tagger(train, test, args.time, workdir, bidirectional)
            print(f"({'c' if bidirectional else 'b'}) {name} tagger: word F1 {results[name]['case']['f1']:.4f}, "
                  f"punctuation micro-F1 {results[name]['punct']['f1']:.4f}", flush=True)
        results["language_model"] = language_model(train, test_lines, args.time, workdir)
        print(f"(d) charlm truecase with the default language model: word F1 "
              f"{results['language_model']['case']['f1']:.4f}", flush=True)

    print(f"\ntruecasing, word level over words that are not all lowercase ({len(test_lines):,} test lines)")
    print(f"{'method':<40} {'precision':>9} {'recall':>7} {'F1':>7}")
    for label, key in (("(a) most frequent casing", "baseline"), ("(b) unidirectional tagger", "unidirectional"),
                       ("(c) bidirectional tagger", "bidirectional"), ("(d) charlm truecase (LM)", "language_model")):
        s = results[key]["case"]
        print(f"{label:<40} {s['precision']:9.4f} {s['recall']:7.4f} {s['f1']:7.4f}")
    print("\npunctuation restoration, F1 per mark (support)")
    marks = list(results["bidirectional"]["punct"]["labels"])[1:]
    print(f"{'tagger':<18}" + "".join(f"{m!r:>14}" for m in marks) + f"{'micro':>9}")
    for key in ("unidirectional", "bidirectional"):
        labels = results[key]["punct"]["labels"]
        cells = "".join(f"{labels[m]['f1']:>7.3f} ({labels[m]['support']:>4})" for m in marks)
        print(f"{key:<18}{cells}{results[key]['punct']['f1']:>9.3f}")
    print("\n" + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
