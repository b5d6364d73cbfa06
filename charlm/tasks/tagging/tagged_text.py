"""Tagging tasks: what a tagger reads and what it learns to label, made from text (truecasing, punctuation
restoration, which need no labelled data) or read from a CoNLL-style file (labelled tags); and the reverse,
a restored text from predicted labels.

A `TaggedDoc` holds the characters the tagger reads and, per head, one label id per character, NO_LABEL
where the task labels nothing:
- truecase: input = the text lowercased (character by character, so positions match); label "upper" where
  the original character differs from its lowercase form, else "lower"; every character labelled.
- punctuate: input = the text without the chosen marks where they close a word (a run of marks followed by
  whitespace or the end: "e.g." keeps its inner dot); label at each word's last character = the first mark
  that followed the word, or "none". Other positions unlabelled.
- truecase+punctuate: both heads on the lowercased punctuate input.
- tag: the tokens of a sentence joined by single spaces; the token's label at its last character.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import ConfigError, CorpusError
from charlm.text.casing import lowercase
from charlm.text.corpus import read_text
from charlm.training.options import DEFAULT_MARKS

NO_LABEL = -1
TASKS = ("truecase", "punctuate", "truecase+punctuate", "tag")
CASE_LABELS = ("lower", "upper")
NO_MARK = "none"


@dataclass(frozen=True)
class Head:
    """One labelling of a task: its name ("case", "punct" or "tag") and its labels, index = label id."""

    name: str
    labels: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "labels": list(self.labels)}


@dataclass(frozen=True)
class TaggedDoc:
    """- text: the characters the tagger reads
    - labels: per head, label ids of shape (len(text),), NO_LABEL where the head labels nothing
    - tokens: for the tag task, each token's (start, end) span in text; else None"""

    text: str
    labels: tuple[np.ndarray, ...]
    tokens: tuple[tuple[int, int], ...] | None = None


def task_heads(task: str, marks: str = DEFAULT_MARKS, tag_labels: tuple[str, ...] = ()) -> tuple[Head, ...]:
    """The heads a task trains, in order."""
    check_task(task, marks)
    heads = []
    if "truecase" in task:
        heads.append(Head("case", CASE_LABELS))
    if "punctuate" in task:
        heads.append(Head("punct", (NO_MARK, *marks)))
    if task == "tag":
        heads.append(Head("tag", tuple(tag_labels)))
    return tuple(heads)


def check_task(task: str, marks: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"--task must be one of lm, {', '.join(TASKS)}; got {task!r}")
    if "punctuate" in task:
        if not marks or len(set(marks)) != len(marks) or any(c.isspace() or c.isalnum() for c in marks):
            raise ConfigError(f"--marks must be distinct punctuation characters, got {marks!r}")


def _mark_runs(text: str, marks: str):
    """(start, end) of every run of marks that closes a word: preceded by a non-space character that is
    not itself a mark of the run, and followed by whitespace or the end of the text."""
    if not marks:
        return []
    pattern = re.compile(rf"(?<=[^\s{re.escape(marks)}])[{re.escape(marks)}]+(?=\s|$)")
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def make_doc(task: str, text: str, marks: str = DEFAULT_MARKS) -> TaggedDoc:
    """The tagged document of a task that needs no labelled data (truecase, punctuate or both)."""
    heads = []
    if "punctuate" in task:
        follows = {}  # the index of a word's last character -> the id of the mark after it (0 is NO_MARK)
        removed = np.zeros(len(text), dtype=bool)
        for start, end in _mark_runs(text, marks):
            removed[start:end] = True
            follows[start - 1] = marks.index(text[start]) + 1
        kept = np.flatnonzero(~removed).tolist()
        plain = "".join(text[i] for i in kept)
        punct = np.full(len(plain), NO_LABEL, dtype=np.int64)
        for j, i in enumerate(kept):
            at_word_end = not plain[j].isspace() and (j + 1 == len(plain) or plain[j + 1].isspace())
            if at_word_end:
                punct[j] = follows.get(i, 0)
        source, text = [text[i] for i in kept], plain
    else:
        source = list(text)
    if "truecase" in task:
        lowered = lowercase(text)
        case = np.array([int(c != low) for c, low in zip(source, lowered, strict=True)], dtype=np.int64)
        heads.append(case)
        text = lowered
    if "punctuate" in task:
        heads.append(punct)
    return TaggedDoc(text=text, labels=tuple(heads))


def restore(task: str, text: str, predicted: list[np.ndarray], heads: tuple[Head, ...]) -> str:
    """The text with the predicted labels applied: upper-case where "upper", each mark after its word.

    - predicted: per head, label ids of shape (len(text),) (ignored where the task labels nothing)
    """
    by_name = dict(zip((h.name for h in heads), predicted, strict=True))
    out = []
    case, punct = by_name.get("case"), by_name.get("punct")
    marks = next((h.labels for h in heads if h.name == "punct"), ())
    for i, c in enumerate(text):
        out.append(c.upper() if case is not None and case[i] == 1 and len(c.upper()) == 1 else c)
        if punct is not None and not c.isspace() and (i + 1 == len(text) or text[i + 1].isspace()) \
                and punct[i] > 0:
            out.append(marks[int(punct[i])])  # label 0 is NO_MARK
    return "".join(out)


# ------------------------------------------------------------------------------------------ CoNLL


@dataclass(frozen=True)
class Sentence:
    tokens: tuple[str, ...]
    labels: tuple[str, ...]
    line: int  # the line of its first token (for messages)


def read_conll(path, encoding: str = "utf-8") -> list[Sentence]:
    """Sentences of a CoNLL-style file: `token<TAB>label` per line (more tab-separated columns: the first is
    the token, the last the label), a blank line between sentences, `#` comment lines ignored.

    A malformed line raises CorpusError naming `file:line`.
    """
    path = Path(path)
    lines = read_text(path, encoding).splitlines()  # undecodable or unreadable: a CorpusError naming the file
    sentences, tokens, labels, first = [], [], [], 0
    for number, line in enumerate(lines, start=1):
        if line.startswith("#"):
            continue
        if not line.strip():
            if tokens:
                sentences.append(Sentence(tuple(tokens), tuple(labels), first))
                tokens, labels = [], []
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[-1].strip():
            hint = "" if any("\t" in other for other in lines) else (
                "; --task tag needs a CoNLL-style file (is this untagged text?)")
            raise CorpusError(f"{path}:{number}: expected token<TAB>label, got {line[:60]!r}{hint}")
        token, label = fields[0].strip(), fields[-1].strip()
        if any(c.isspace() for c in token):
            raise CorpusError(f"{path}:{number}: the token {token!r} holds whitespace")
        if not tokens:
            first = number
        tokens.append(token)
        labels.append(label)
    if tokens:
        sentences.append(Sentence(tuple(tokens), tuple(labels), first))
    if not sentences:
        raise CorpusError(f"{path}: no tagged sentences (token<TAB>label lines, a blank line between "
                          f"sentences); is it an untagged corpus? --task tag needs a CoNLL-style file")
    return sentences


def tag_doc(tokens, labels=None, label_ids: dict | None = None) -> TaggedDoc:
    """The tagged document of a sentence: tokens joined by spaces, each label at its token's last character
    (labels None: an untagged sentence to tag)."""
    text = " ".join(tokens)
    spans, start = [], 0
    for token in tokens:
        spans.append((start, start + len(token)))
        start += len(token) + 1
    y = np.full(len(text), NO_LABEL, dtype=np.int64)
    if labels is not None:
        for (_, end), label in zip(spans, labels, strict=True):
            y[end - 1] = label_ids[label]
    return TaggedDoc(text=text, labels=(y,), tokens=tuple(spans))
