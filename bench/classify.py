"""Classification benchmarks, two suites chosen by `--suite` (both by default, surnames first):

surnames: the language of a surname from its letters (names-by-language.tsv, 20 labels, heavily skewed),
charlm's classifiers against scikit-learn's character n-gram baselines on one split.
A stratified 90/10 split with a fixed seed (charlm's own `stratified_split`); each charlm classifier trains for
`--time` (5 minutes by default) with `--balance` (the labels are skewed) and is scored with
`charlm evaluate --json`:
  - bidirectional LSTM with each pooling (last, mean, max), then unidirectional with the best of them;
  - scikit-learn (installed for this benchmark only, never a dependency of charlm): multinomial Naive Bayes and
    logistic regression over character 1-4-grams (TfidfVectorizer(analyzer="char_wb")), the regression also with
    class_weight="balanced", the counterpart of charlm's --balance (a stronger baseline on macro-F1).
Accuracy flatters a skewed label set, so macro-F1 is reported beside it, and per label.

sst2: the sentiment of a movie review sentence (SST-2 from `--sst2-dir`: sst2.train.tsv, phrases and sentences,
and sst2.dev.tsv, 872 sentences, `positive|negative<TAB>sentence`), trained on train and scored on dev:
  - scikit-learn: logistic regression over TF-IDF word 1-2-grams (C=1 and C=4), multinomial Naive Bayes over the
    same features, and logistic regression (C=4) over character 1-5-grams (analyzer="char_wb");
  - charlm, each for `--time` (10 minutes by default) and scored with `charlm evaluate --json`, with nothing but
    the flags named: words (the recipe, `--tokens word`, which pre-trains), words with `--no-pretrain`, and
    characters (the recipe);
    `--only words,nopretrain,chars` picks some of them;
  - the speed of the words classifier as a user meets it, process start included: the wall seconds of
    `charlm evaluate RUN sst2.dev.tsv` (the goal is under 3 s) and the lines per second of `charlm classify RUN`
    over 10,000 lines on stdin (the dev sentences repeated).

Each suite prints its progress, a table and finally one JSON line with its figures. Run directories live in a
temporary directory, or under `--keep DIR` (DIR/surnames, DIR/sst2) to look at them afterwards.

    flock /tmp/charlm-bench.lock .venv/bin/python bench/classify.py --suite surnames [--corpus FILE] [--time 5m]
    flock /tmp/charlm-bench.lock .venv/bin/python bench/classify.py --suite sst2 [--sst2-dir DIR] [--time 10m]
"""

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from charlm.tasks.classify.labelled_text import read_labelled, stratified_split

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
DEFAULT_CORPUS = CORPORA / "names-by-language.tsv"
CHARLM = [sys.executable, "-m", "charlm"]
SEED = 1234
SKLEARN_MISSING = "scikit-learn is not installed: pip install scikit-learn (for this benchmark only)"

SUITES = ("surnames", "sst2")
# Each suite's training budget when --time is not given: SST-2's larger training set needs longer.
DEFAULT_TIME = {"surnames": "5m", "sst2": "10m"}
# The sst2 suite's charlm rows: key for --only -> (name in the table, flags after `--task classify`).
# The goal's command first (the recipe pre-trains a language model for words), then the same without the
# pre-training, then characters.
SST2_ROWS = {
    "words": ("words (recipe)", ("--tokens", "word")),
    "nopretrain": ("words, --no-pretrain", ("--tokens", "word", "--no-pretrain")),
    "chars": ("characters (recipe)", ()),
}
CLASSIFY_LINES = 10_000


def charlm(*args) -> str:
    done = subprocess.run([*CHARLM, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"charlm {' '.join(map(str, args[:2]))} failed: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def run_directory(keep: Path | None, suite: str):
    """Where a suite writes its data and runs: DIR/<suite> under --keep, else a temporary directory."""
    if keep is not None:
        workdir = keep / suite
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------------------------------------- surnames suite

def sklearn_baselines(train_texts, train_labels, test_texts, test_labels) -> dict:
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.naive_bayes import MultinomialNB
    except ImportError:
        print(SKLEARN_MISSING, file=sys.stderr)
        return {}
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=True)
    train_x = vectorizer.fit_transform(train_texts)
    test_x = vectorizer.transform(test_texts)
    found = {}
    for name, model in (("naive Bayes (char 1-4-grams)", MultinomialNB(alpha=0.1)),
                        ("logistic regression (char 1-4-grams)", LogisticRegression(max_iter=2000, C=10.0)),
                        ("logistic regression, balanced", LogisticRegression(max_iter=2000, C=10.0,
                                                                             class_weight="balanced"))):
        predicted = model.fit(train_x, train_labels).predict(test_x)
        labels = sorted(set(test_labels))
        per_label = f1_score(test_labels, predicted, labels=labels, average=None)
        found[name] = {"accuracy": accuracy_score(test_labels, predicted),
                       "macro_f1": f1_score(test_labels, predicted, labels=labels, average="macro"),
                       "labels": {label: {"f1": float(f)} for label, f in zip(labels, per_label, strict=True)}}
    return found


def surnames_missing(args) -> str | None:
    if not args.corpus.exists():
        return f"corpus not found: {args.corpus} (pass --corpus)"
    return None


def surnames_suite(args) -> int:
    budget = args.time or DEFAULT_TIME["surnames"]
    data = read_labelled(args.corpus)
    train_rows, test_rows = stratified_split(data.labels, 0.1, SEED)
    results = {}
    with run_directory(args.keep, "surnames") as workdir:
        train, test = workdir / "train.tsv", workdir / "test.tsv"
        for path, rows in ((train, train_rows), (test, test_rows)):
            path.write_text("".join(f"{data.labels[i]}\t{data.texts[i]}\n" for i in rows), encoding="utf-8")
        print(f"{len(train_rows):,} training and {len(test_rows):,} test names, {len(set(data.labels))} labels",
              flush=True)
        results.update(sklearn_baselines([data.texts[i] for i in train_rows], [data.labels[i] for i in train_rows],
                                         [data.texts[i] for i in test_rows], [data.labels[i] for i in test_rows]))
        for name, r in results.items():
            print(f"{name}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}", flush=True)

        def classifier(name, *flags):
            out = workdir / name.replace(" ", "-")
            charlm("train", train, "--task", "classify", "--time", budget, "--balance", "--out", out, "-q", *flags)
            found = json.loads(charlm("evaluate", out, test, "--json"))
            results[name] = found
            print(f"charlm {name}: accuracy {found['accuracy']:.4f}, macro-F1 {found['macro_f1']:.4f}", flush=True)
            return found["macro_f1"]

        pools = {pool: classifier(f"bidirectional {pool}", "--bidirectional", "--pool", pool)
                 for pool in ("last", "mean", "max")}
        best = max(pools, key=pools.get)
        classifier(f"unidirectional {best}", "--pool", best)

    print(f"\n{'method':<40} {'accuracy':>9} {'macro-F1':>9}")
    for name, r in results.items():
        print(f"{name:<40} {r['accuracy']:9.4f} {r['macro_f1']:9.4f}")
    labels = sorted(set(data.labels), key=lambda label: -data.labels.count(label))
    shown = [name for name in results
             if name.startswith(("naive", "logistic regression,", "bidirectional " + best, "unidirectional"))]
    print(f"\nF1 per language (test support), {' | '.join(shown)}")
    counts = np.bincount([sorted(set(data.labels)).index(data.labels[i]) for i in test_rows])
    for label in labels:
        support = counts[sorted(set(data.labels)).index(label)]
        cells = "".join(f"{results[name]['labels'][label]['f1']:>9.3f}" for name in shown)
        print(f"{label:<14} {support:>5}{cells}")
    print("\n" + json.dumps({name: {k: r[k] for k in ("accuracy", "macro_f1")} for name, r in results.items()}))
    return 0


# -------------------------------------------------------------------------------------------------- sst2 suite

def sst2_files(args) -> tuple[Path, Path]:
    return args.sst2_dir / "sst2.train.tsv", args.sst2_dir / "sst2.dev.tsv"


def sst2_missing(args) -> str | None:
    absent = [path for path in sst2_files(args) if not path.exists()]
    if absent:
        return f"SST-2 not found: {', '.join(map(str, absent))} (pass --sst2-dir)"
    return None


def sst2_baselines(train, dev) -> dict:
    """The linear baselines the issue measured, trained on train and scored on dev."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.naive_bayes import MultinomialNB
    except ImportError:
        print(SKLEARN_MISSING, file=sys.stderr)
        return {}
    words = TfidfVectorizer(ngram_range=(1, 2))
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5))
    found = {}
    for features, rows in (
            (words, (("logistic regression (word 1-2-grams, C=1)", LogisticRegression(max_iter=2000, C=1.0)),
                     ("logistic regression (word 1-2-grams, C=4)", LogisticRegression(max_iter=2000, C=4.0)),
                     ("naive Bayes (word 1-2-grams)", MultinomialNB()))),
            (chars, (("logistic regression (char 1-5-grams, C=4)", LogisticRegression(max_iter=2000, C=4.0)),))):
        train_x = features.fit_transform(train.texts)  # once per feature set, shared by its models
        dev_x = features.transform(dev.texts)
        for name, model in rows:
            predicted = model.fit(train_x, train.labels).predict(dev_x)
            found[name] = {"accuracy": float(accuracy_score(dev.labels, predicted)),
                           "macro_f1": float(f1_score(dev.labels, predicted, average="macro"))}
            print(f"{name}: accuracy {found[name]['accuracy']:.4f}", flush=True)
    return found


def sst2_classifier(train: Path, dev: Path, out: Path, budget: str, flags) -> dict:
    """Train with only the flags given (the recipe decides the rest) and score on dev."""
    charlm("train", train, "--task", "classify", *flags, "--time", budget, "--out", out, "-q")
    found = json.loads(charlm("evaluate", out, dev, "--json"))
    return {"accuracy": found["accuracy"], "macro_f1": found["macro_f1"]}


def wall_seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def classify_stdin(run: Path, text: str) -> None:
    done = subprocess.run([*CHARLM, "classify", str(run), "-q"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"charlm classify failed: {done.stderr.strip()}")


def sst2_speed(run: Path, dev_file: Path, dev_texts) -> dict:
    """Wall seconds of the commands a user runs, process start and checkpoint load included. The evaluation
    with --json just before has read the same files, so these are warm starts, as a second command would be."""
    evaluate = wall_seconds(lambda: charlm("evaluate", run, dev_file))
    lines = (dev_texts * (CLASSIFY_LINES // len(dev_texts) + 1))[:CLASSIFY_LINES]
    classify = wall_seconds(lambda: classify_stdin(run, "\n".join(lines) + "\n"))
    speed = {"evaluate_seconds": evaluate, "dev_sentences": len(dev_texts),
             "classify_seconds": classify, "classify_lines": len(lines),
             "classify_lines_per_second": len(lines) / classify}
    print(f"charlm evaluate (dev, {len(dev_texts)} sentences): {evaluate:.2f} s (goal under 3 s)", flush=True)
    print(f"charlm classify ({len(lines):,} lines on stdin): {classify:.2f} s, "
          f"{speed['classify_lines_per_second']:,.0f} lines/s", flush=True)
    return speed


def sst2_suite(args) -> int:
    budget = args.time or DEFAULT_TIME["sst2"]
    train_file, dev_file = sst2_files(args)
    train, dev = read_labelled(train_file), read_labelled(dev_file)
    print(f"SST-2: {len(train.texts):,} training phrases and sentences, {len(dev.texts):,} dev sentences, "
          f"charlm for {budget} each", flush=True)
    results = sst2_baselines(train, dev)
    speed = {}
    with run_directory(args.keep, "sst2") as workdir:
        for key in args.only:
            name, flags = SST2_ROWS[key]
            out = workdir / key
            results[f"charlm {name}"] = found = sst2_classifier(train_file, dev_file, out, budget, flags)
            print(f"charlm {name}: accuracy {found['accuracy']:.4f}, macro-F1 {found['macro_f1']:.4f}", flush=True)
            if key == "words":  # the goal's classifier: its speed too
                speed = sst2_speed(out, dev_file, dev.texts)

    print(f"\n{'method':<44} | accuracy (dev)")
    for name, r in results.items():
        print(f"{name:<44} | {r['accuracy']:.4f}")
    if speed:
        print(f"\ncharlm evaluate, words (recipe), dev: {speed['evaluate_seconds']:.2f} s (goal under 3 s)")
        print(f"charlm classify, words (recipe), {speed['classify_lines']:,} lines on stdin: "
              f"{speed['classify_seconds']:.2f} s, {speed['classify_lines_per_second']:,.0f} lines/s")
    print("\n" + json.dumps({"suite": "sst2", "time": budget, "results": results, "speed": speed}))
    return 0


# ---------------------------------------------------------------------------------------------------- command

def row_keys(value: str) -> list[str]:
    keys = [key.strip() for key in value.split(",") if key.strip()]
    unknown = [key for key in keys if key not in SST2_ROWS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(SST2_ROWS)}")
    return [key for key in SST2_ROWS if key in keys]  # the table's order, whatever the order given


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="all", help="which benchmark to run")
    parser.add_argument("--time", help="training budget of each charlm classifier "
                                       "[default: 5m for surnames, 10m for sst2]")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="surnames: the labelled names")
    parser.add_argument("--sst2-dir", type=Path, default=CORPORA,
                        help="sst2: the directory of sst2.train.tsv and sst2.dev.tsv")
    parser.add_argument("--only", type=row_keys, default=list(SST2_ROWS),
                        help=f"sst2: the charlm rows to run, a comma-separated subset of {','.join(SST2_ROWS)} "
                             "(the speed rows need words)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the run directories under DIR/<suite> instead of a temporary directory")
    args = parser.parse_args()
    suites = SUITES if args.suite == "all" else (args.suite,)
    checks = {"surnames": surnames_missing, "sst2": sst2_missing}
    # All data checked before anything trains, so a missing file never ends a long run halfway.
    missing = [message for suite in suites if (message := checks[suite](args))]
    for message in missing:
        print(message, file=sys.stderr)
    if missing:
        return 2
    run = {"surnames": surnames_suite, "sst2": sst2_suite}
    for n, suite in enumerate(suites):
        if n:
            print(flush=True)
        code = run[suite](args)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
