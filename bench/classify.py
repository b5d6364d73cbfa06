"""Classification benchmark: the language of a surname from its letters (names-by-language.tsv, 20 labels,
heavily skewed), charlm's classifiers against scikit-learn's character n-gram baselines on one split.

A stratified 90/10 split with a fixed seed (charlm's own `stratified_split`); each charlm classifier trains for
`--time` (5 minutes by default) with `--balance` (the labels are skewed) and is scored with
`charlm evaluate --json`:
  - bidirectional LSTM with each pooling (last, mean, max), then unidirectional with the best of them;
  - scikit-learn (installed for this benchmark only, never a dependency of charlm): multinomial Naive Bayes and
    logistic regression over character 1-4-grams (TfidfVectorizer(analyzer="char_wb")), the regression also with
    class_weight="balanced", the counterpart of charlm's --balance (a stronger baseline on macro-F1).
Accuracy flatters a skewed label set, so macro-F1 is reported beside it, and per label.

    flock /tmp/charlm-bench.lock .venv/bin/python bench/classify.py [--corpus FILE] [--time 5m]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from charlm.tasks.classify.labelled_text import read_labelled, stratified_split

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "names-by-language.tsv"
CHARLM = [sys.executable, "-m", "charlm"]
SEED = 1234


def charlm(*args) -> str:
    done = subprocess.run([*CHARLM, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"charlm {' '.join(map(str, args[:2]))} failed: {done.stderr.strip()}")
    return done.stdout


def sklearn_baselines(train_texts, train_labels, test_texts, test_labels) -> dict:
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.naive_bayes import MultinomialNB
    except ImportError:
        print("scikit-learn is not installed: pip install scikit-learn (for this benchmark only)", file=sys.stderr)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--time", default="5m", help="training budget of each charlm classifier")
    args = parser.parse_args()
    if not args.corpus.exists():
        print(f"corpus not found: {args.corpus} (pass --corpus)", file=sys.stderr)
        return 2
    data = read_labelled(args.corpus)
    train_rows, test_rows = stratified_split(data.labels, 0.1, SEED)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
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
            charlm("train", train, "--task", "classify", "--time", args.time, "--balance", "--out", out, "-q", *flags)
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


if __name__ == "__main__":
    sys.exit(main())
