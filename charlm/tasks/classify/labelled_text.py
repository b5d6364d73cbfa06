"""Labelled texts for classification (many-to-one): one example per line, `label<TAB>text`, or fastText's
`__label__name text` (detected from the first non-empty line), and the stratified held-out split."""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import CorpusError
from charlm.text.batching import held_out_count
from charlm.text.corpus import read_text

FASTTEXT_PREFIX = "__label__"


@dataclass(frozen=True)
class LabelledTexts:
    """- texts, labels: the examples, in file order
    - lines: each example's line number (for messages)
    - fasttext: whether the file was in fastText's form"""

    texts: list[str]
    labels: list[str]
    lines: list[int]
    fasttext: bool


def read_labelled(path, encoding: str = "utf-8") -> LabelledTexts:
    """The examples of a labelled file. A line without a label or with an empty text is a CorpusError naming
    `file:line`; blank lines are skipped."""
    path = Path(path)
    raw = read_text(path, encoding).splitlines()  # undecodable or unreadable: a CorpusError naming the file
    numbered = [(n, line) for n, line in enumerate(raw, start=1) if line.strip()]
    if not numbered:
        raise CorpusError(f"{path}: no examples (one `label<TAB>text` per line)")
    fasttext = numbered[0][1].startswith(FASTTEXT_PREFIX)
    texts, labels, lines = [], [], []
    for number, line in numbered:
        if fasttext:
            match = re.match(rf"{FASTTEXT_PREFIX}(\S+)\s*(.*)$", line)
            label, text = (match.group(1), match.group(2)) if match else ("", "")
            form = f"{FASTTEXT_PREFIX}label text"
        else:
            label, tab, text = line.partition("\t")
            label = label.strip() if tab else ""
            form = "label<TAB>text"
        if not label:
            raise CorpusError(f"{path}:{number}: no label (expected {form}), got {line[:60]!r}")
        if not text.strip():
            raise CorpusError(f"{path}:{number}: the text of label {label!r} is empty")
        texts.append(text.strip())
        labels.append(label)
        lines.append(number)
    return LabelledTexts(texts, labels, lines, fasttext)


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out) that hold out `fraction` of each label's examples (seeded, at least one of a
    label with two examples or more, never all of them); a label seen once stays in training."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        held[rng.choice(members, held_out_count(len(members), fraction), replace=False)] = True
    return np.flatnonzero(~held), np.flatnonzero(held)
