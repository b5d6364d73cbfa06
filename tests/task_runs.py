"""Tiny real runs of a tagger and a classifier, trained in this process in about a second each, for the tests
of the explorer and of `charlm plot`:

    from task_runs import train_classifier, train_tagger
"""

from pathlib import Path

import numpy as np

from charlm.tasks.registry import train
from charlm.training.options import TrainOptions

NAMES = ["Alice", "Bob", "Carol", "Dan"]
WORDS = ["met", "saw", "the", "cat", "in", "a", "park", "and", "then", "left"]
# Generated surnames whose label is set by their ending, a skewed number of each.
ENDINGS = {"Russian": "ov", "Greek": "los", "Irish": "an", "Japanese": "ki"}
SIZES = {"Russian": 100, "Greek": 50, "Irish": 40, "Japanese": 30}


def sentences(n: int, seed: int) -> list[str]:
    """Sentences with names to capitalise and marks that follow from the words (a question after "saw")."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = [str(rng.choice(NAMES))] + [str(w) for w in rng.choice(WORDS, 4)] + [str(rng.choice(NAMES))]
        mark = "?" if words[1] == "saw" else "."
        out.append(" ".join(words[:3]) + ", " + " ".join(words[3:]) + mark)
    return out


def surnames(seed: int) -> list[str]:
    """`label<TAB>surname` lines, shuffled."""
    rng = np.random.default_rng(seed)
    lines = []
    for label, n in SIZES.items():
        for _ in range(n):
            stem = "".join(rng.choice(list("bcdfgklmnprstvaeiou"), rng.integers(2, 6)))
            lines.append(f"{label}\t{stem.capitalize()}{ENDINGS[label]}")
    rng.shuffle(lines)
    return lines


def train_tagger(root: Path, name: str = "truecaser") -> Path:
    """A bidirectional truecase+punctuate tagger, evaluated 3 times (validation F1 about 0.95); its corpus is
    root/sentences.txt and 40 held-out sentences are root/heldout.txt."""
    corpus = root / "sentences.txt"
    corpus.write_text("\n".join(sentences(200, 0)) + "\n", encoding="utf-8")
    (root / "heldout.txt").write_text("\n".join(sentences(40, 1)) + "\n", encoding="utf-8")
    out = root / name
    train(TrainOptions(corpus=str(corpus), out=str(out), task="truecase+punctuate", bidirectional=True, hidden=24,
                       layers=1, batch=16, steps=120, eval_every=40, warmup=1, lr=0.01))
    return out


def train_classifier(root: Path, name: str = "classifier") -> Path:
    """A bidirectional classifier of surnames (root/names.tsv), evaluated exactly twice."""
    corpus = root / "names.tsv"
    corpus.write_text("\n".join(surnames(4)) + "\n", encoding="utf-8")
    out = root / name
    train(TrainOptions(corpus=str(corpus), out=str(out), task="classify", bidirectional=True, hidden=16, layers=1,
                       batch=16, steps=40, eval_every=20, warmup=1))
    return out
