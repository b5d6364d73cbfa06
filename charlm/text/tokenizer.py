"""Character vocabulary: `<EOS>` = 0, `<UNK>` = 1, then characters in code-point order.

A vocabulary has a tokenizer `kind` (one of KINDS), saved in its dict form (and so in checkpoints and cache
keys); `tokenizer_from_dict` reads any kind. A dict without "kind" is a character vocabulary, as every
older file holds. All kinds share one duck-typed interface: `kind`, `size`, `id_dtype`, `tokens`,
`lowercase`, `encode`, `decode`, `decoder`, `unknown`, `token_text`, `char_count`, `to_dict`
(`charlm.text.words.WordVocab` is the word kind, `charlm.text.symbols.SymbolVocab` the symbols kind).

The order depends only on which characters are kept, never on hashing or insertion order, so the same
counts give the same ids in every process. Encoding and decoding are numpy table lookups over code points
(UTF-32), with no Python loop over characters.
"""

from collections.abc import Iterable, Mapping

import numpy as np

from charlm.text.symbols import SymbolVocab
from charlm.text.vocab import DOC_END, EOS, KINDS, SPECIALS, UNK, codepoints, id_dtype_for
from charlm.text.words import WordVocab

__all__ = ["DOC_END", "EOS", "KINDS", "SPECIALS", "UNK", "CharDecoder", "Vocab", "codepoints", "id_dtype_for",
           "tokenizer_from_dict"]

def tokenizer_from_dict(d):
    """The vocabulary a `to_dict()` form describes: a `Vocab`, a `charlm.text.words.WordVocab` or a
    `charlm.text.symbols.SymbolVocab`.

    A dict without "kind" is a character vocabulary. Raises ValueError naming what is malformed, or the kind
    when it is not one of KINDS.
    """
    if not isinstance(d, dict):
        raise ValueError("vocabulary must be a JSON object")
    kind = d.get("kind", "char")
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; this charlm reads {', '.join(KINDS)}")
    return {"char": Vocab, "word": WordVocab, "symbols": SymbolVocab}[kind].from_dict(d)


class CharDecoder:
    """Incremental decoding for characters: every id is its own text, so no context is needed."""

    def __init__(self, vocab: "Vocab", eos: str, unk: str):
        # id -> text, built once: feed runs once per generated character of every streamed sample
        self._texts = (eos, unk) + vocab.chars

    def feed(self, ids) -> str:
        """The text of `ids`."""
        texts = self._texts
        return "".join(texts[i] for i in ids)


class Vocab:
    """A fixed character vocabulary; build it with `Vocab.build` or load it with `Vocab.from_dict`."""

    kind = "char"
    lowercase = False

    def __init__(self, chars: Iterable[str]):
        """chars: the kept characters, each a 1-character str, distinct, in increasing code-point order."""
        self.chars = tuple(chars)
        _check_chars(self.chars)
        self.size = len(SPECIALS) + len(self.chars)
        self.id_dtype = id_dtype_for(self.size)
        # Dense table from code point to id over 0..max code point, plus one trailing <UNK> slot that every
        # larger code point is clipped onto.
        char_codes = codepoints("".join(self.chars))
        table_len = int(char_codes.max()) + 2 if len(char_codes) else 1
        self._encode_table = np.full(table_len, UNK, dtype=self.id_dtype)
        self._encode_table[char_codes] = np.arange(len(SPECIALS), self.size, dtype=self.id_dtype)

    @classmethod
    def build(cls, counts: Mapping[str, int], min_count: int = 1, max_vocab: int | None = None) -> "Vocab":
        """Keep the characters seen at least `min_count` times, then at most `max_vocab` of them.

        - counts: character -> occurrences in the corpus
        - min_count: rarer characters fold into `<UNK>`
        - max_vocab: the number of *characters* kept (the two specials come on top, so `size` is at most
          `max_vocab + 2`); the most frequent win, ties go to the lower code point
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        if max_vocab is not None and max_vocab < 1:
            raise ValueError(f"max_vocab must be at least 1, got {max_vocab}")
        kept = [c for c, n in counts.items() if n >= min_count]
        if max_vocab is not None and len(kept) > max_vocab:
            kept = sorted(kept, key=lambda c: (-counts[c], ord(c)))[:max_vocab]
        return cls(sorted(kept, key=ord))

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text`, shape (len(text),), dtype `id_dtype`; characters outside the vocabulary -> `<UNK>`."""
        return self.encode_codepoints(codepoints(text))

    def encode_codepoints(self, codes: np.ndarray) -> np.ndarray:
        """Ids of an integer array of code points (any shape), dtype `id_dtype`."""
        last = len(self._encode_table) - 1
        return self._encode_table[np.minimum(codes, last)]

    def decode(self, ids, eos: str = "\n", unk: str = "\ufffd") -> str:
        """Text of an id sequence; `<EOS>` and `<UNK>` are written as `eos` and `unk`."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(f"ids must lie in 0..{self.size - 1}, got {ids.min()}..{ids.max()}")
        pieces = np.array((eos, unk) + self.chars, dtype=object)
        return "".join(pieces[ids.reshape(-1)].tolist())

    @property
    def tokens(self) -> tuple:
        """The kept characters, ids 2.. (the tokens of this kind)."""
        return self.chars

    def decoder(self, context=(), eos: str = "\n", unk: str = "\ufffd") -> CharDecoder:
        """An incremental decoder; `context` (ids already shown) does not change a character's text."""
        return CharDecoder(self, eos, unk)

    def unknown(self, text: str) -> list[str]:
        """Distinct characters of `text` that encode to `<UNK>`, in code-point order."""
        distinct = np.unique(codepoints(text))
        return [chr(c) for c in distinct[self.encode_codepoints(distinct) == UNK]]

    def token_text(self, i: int) -> str:
        """The display text of id `i`: its character, or "<EOS>" / "<UNK>"."""
        return SPECIALS[i] if i < len(SPECIALS) else self.chars[i - len(SPECIALS)]

    def char_count(self, ids, *, unk_length: float = 1.0) -> float:
        """Characters of the text `ids[1:]` stand for: one per id (`<EOS>` stands for a document end),
        `unk_length` per `<UNK>`."""
        ids = np.asarray(ids).reshape(-1)[1:]
        return float(len(ids) + (unk_length - 1.0) * np.count_nonzero(ids == UNK))

    def to_dict(self) -> dict:
        """Plain JSON form: {"kind": "char", "specials": ["<EOS>", "<UNK>"], "chars": [...]}."""
        return {"kind": self.kind, "specials": list(SPECIALS), "chars": list(self.chars)}

    @classmethod
    def from_dict(cls, d) -> "Vocab":
        """Inverse of `to_dict`; a dict without "kind" is a character vocabulary.

        Raises ValueError naming what is malformed, or the tokenizer kind when it is not "char".
        """
        if not isinstance(d, dict):
            raise ValueError("vocabulary must be a JSON object")
        kind = d.get("kind", "char")
        if kind != "char":
            raise ValueError(f"tokenizer kind {kind!r} is not a character vocabulary")
        if set(d) - {"kind"} != {"specials", "chars"}:
            raise ValueError("vocabulary must be an object with the keys 'specials' and 'chars' (and 'kind')")
        if d["specials"] != list(SPECIALS):
            raise ValueError(f"vocabulary specials must be {list(SPECIALS)}, got {d['specials']!r}")
        if not isinstance(d["chars"], list):
            raise ValueError("vocabulary 'chars' must be a list")
        return cls(d["chars"])

    def __contains__(self, char: str) -> bool:
        return char in self.chars

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and (self.kind, self.chars) == (other.kind, other.chars)

    def __hash__(self) -> int:
        return hash((self.kind, self.chars))

    def __repr__(self) -> str:
        return f"Vocab(size={self.size})"


def _check_chars(chars: tuple) -> None:
    for i, c in enumerate(chars):
        if not isinstance(c, str) or len(c) != 1:
            raise ValueError(f"vocabulary entry {i} must be a single character, got {c!r}")
        if i and ord(c) <= ord(chars[i - 1]):
            raise ValueError(f"vocabulary characters must be distinct and in code-point order: "
                             f"{chars[i - 1]!r} comes before {c!r}")
