"""Sentence pairs for the encoder–decoder (`--task translate`): one pair a line, `source<TAB>target`.

Rules:
- a third or later column (the attribution column of Tatoeba's exports) is ignored; `Pairs.extra_columns`
  counts the lines that had one, for the one note the caller gives;
- a line without a tab, or with an empty side, is a CorpusError naming `file:line`; blank lines are skipped;
- the same source on several lines is several references (a word with two pronunciations, a sentence with two
  translations): `references` groups them, and `split_by_source` keeps all of a source's lines on one side of
  the held-out split, so a held-out source is never seen in training under another reference; data whose
  sources repeat by design (one-to-many: a label -> its names) is held out line by line (`split_pairs`).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import CorpusError
from charlm.text.batching import held_out_mask
from charlm.text.corpus import read_text

# Beyond this many lines per distinct source on average, the data is one-to-many (see `one_to_many`).
REFERENCES_PER_SOURCE = 5


@dataclass(frozen=True)
class Pairs:
    """- sources, targets: the pairs, in file order, each side stripped
    - lines: each pair's line number (for messages)
    - extra_columns: how many lines had a third or later column (ignored)"""

    sources: list[str]
    targets: list[str]
    lines: list[int]
    extra_columns: int


def read_pairs(path, encoding: str = "utf-8") -> Pairs:
    """The pairs of a `source<TAB>target` file (see the module's rules)."""
    path = Path(path)
    raw = read_text(path, encoding).splitlines()  # undecodable or unreadable: a CorpusError naming the file
    sources, targets, lines, extra = [], [], [], 0
    for number, line in enumerate(raw, start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) < 2:
            raise CorpusError(f"{path}:{number}: no tab (expected source<TAB>target), got {line[:60]!r}")
        source, target = columns[0].strip(), columns[1].strip()
        for side, text in (("source", source), ("target", target)):
            if not text:
                raise CorpusError(f"{path}:{number}: the {side} is empty (expected source<TAB>target)")
        extra += len(columns) > 2
        sources.append(source)
        targets.append(target)
        lines.append(number)
    if not sources:
        raise CorpusError(f"{path}: no pairs (one source<TAB>target per line)")
    return Pairs(sources, targets, lines, extra)


def references(sources: list[str], targets: list[str]) -> dict[str, list[str]]:
    """Each distinct source's targets, in file order (sources in order of first appearance)."""
    grouped: dict[str, list[str]] = {}
    for source, target in zip(sources, targets, strict=True):
        grouped.setdefault(source, []).append(target)
    return grouped


def one_to_many(sources: list[str]) -> bool:
    """Whether the sources repeat by design (a label -> its many names): on average more than
    REFERENCES_PER_SOURCE lines per distinct source. Holding out whole sources would then hold out whole
    labels, which the model could never learn, so such data is held out line by line."""
    return len(sources) > REFERENCES_PER_SOURCE * len(set(sources))


def held_out_units(sources: list[str]) -> int:
    """How many units `split_pairs` holds a fraction of: lines for one-to-many data, else distinct sources."""
    return len(sources) if one_to_many(sources) else len(set(sources))


def split_pairs(sources: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Line indices (train, held out): by source (`split_by_source`), or line by line for one-to-many data."""
    if one_to_many(sources):
        held = held_out_mask(len(sources), fraction, seed)
        return np.flatnonzero(~held), np.flatnonzero(held)
    return split_by_source(sources, fraction, seed)


def split_by_source(sources: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Line indices (train, held out): `fraction` of the distinct sources (seeded; at least one when there are
    two or more, never all), each with all of its lines."""
    distinct = list(dict.fromkeys(sources))
    held_out = {s for s, held in zip(distinct, held_out_mask(len(distinct), fraction, seed), strict=True) if held}
    held = np.array([source in held_out for source in sources], dtype=bool)
    return np.flatnonzero(~held), np.flatnonzero(held)
