"""What the vocabularies of whole units share: the word vocabulary (`charlm.text.words`) and the symbol
vocabulary (`charlm.text.symbols`) keep a list of token strings after the two specials, built from counts,
saved as the same JSON form, compared, hashed and checked alike. Each subclass sets `kind` and `noun`, checks
its own tokens (`_check_token`) and adds what differs: how text becomes tokens and how ids become text."""

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import repeat

import numpy as np

from charlm.text.vocab import SPECIALS, UNK, id_dtype_for

UNK_TEXT = "<unk>"
DEFAULT_MAX_VOCAB = 10_000


class UnitVocab(ABC):
    """Ids: `<EOS>` = 0, `<UNK>` = 1, then `tokens` in order; `lowercase`: every text is lowercased token by
    token before lookup."""

    kind = ""
    noun = ""  # "word", "symbol": how messages name the vocabulary

    def __init__(self, tokens: Iterable[str], lowercase: bool = False):
        """tokens: the kept tokens, ids 2.. in order, distinct, each one the subclass accepts."""
        self.tokens = tuple(tokens)
        self.lowercase = bool(lowercase)
        self.size = len(SPECIALS) + len(self.tokens)
        self.id_dtype = id_dtype_for(self.size)
        for i, token in enumerate(self.tokens):
            self._check_token(i, token)
        self._ids = {t: i for i, t in enumerate(self.tokens, start=len(SPECIALS))}
        if len(self._ids) != len(self.tokens):
            twice = next(t for t, n in Counter(self.tokens).items() if n > 1)
            raise ValueError(f"vocabulary token {twice!r} appears more than once")
        self._lengths = np.array([1.0, 0.0] + [len(t) for t in self.tokens])  # (V,) characters per id

    @abstractmethod
    def _check_token(self, i: int, token) -> None:
        """ValueError when `token` (the i-th kept) cannot be a token of this kind."""

    @classmethod
    def build(cls, counts: Mapping[str, int], min_count: int = 1, max_vocab: int | None = DEFAULT_MAX_VOCAB,
              lowercase: bool = False) -> "UnitVocab":
        """Keep the tokens seen at least `min_count` times, then the `max_vocab` most frequent of them.

        - counts: token -> occurrences (the literal "<unk>" is never kept)
        - max_vocab: the number of tokens kept (the two specials come on top); None keeps every token
        - lowercase: whether the counts (and so every text this vocabulary encodes) are lowercased
        Ids follow count descending, ties by the token string in code-point order.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        if max_vocab is not None and max_vocab < 1:
            raise ValueError(f"max_vocab must be at least 1, got {max_vocab}")
        kept = sorted((t for t, n in counts.items() if n >= min_count and t != UNK_TEXT),
                      key=lambda t: (-counts[t], t))
        return cls(kept[:max_vocab] if max_vocab is not None else kept, lowercase=lowercase)

    def _ids_of(self, tokens: list) -> np.ndarray:
        """Each token's id (lowercased first if the vocabulary is), `<UNK>` when it is not kept; int64."""
        if self.lowercase:
            tokens = list(map(str.lower, tokens))
        return np.fromiter(map(self._ids.get, tokens, repeat(UNK)), dtype=np.int64, count=len(tokens))

    def check_ids(self, ids) -> np.ndarray:
        """`ids` as a flat int64 array; ValueError if any lies outside 0..size-1."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(f"ids must lie in 0..{self.size - 1}, got {ids.min()}..{ids.max()}")
        return ids.astype(np.int64)

    @abstractmethod
    def decoder(self, context=(), eos: str = "\n", unk: str = UNK_TEXT):
        """An incremental decoder whose first id follows the ids `context`."""

    def decode(self, ids, eos: str = "\n", unk: str = UNK_TEXT) -> str:
        """Text of an id sequence (the first id read at a document's or line's start); `<EOS>`, `<UNK>` ->
        `eos`, `unk`."""
        return self.decoder(eos=eos, unk=unk).feed(ids)

    def to_dict(self) -> dict:
        """Plain JSON form: {"kind": ..., "lowercase": bool, "specials": ["<EOS>", "<UNK>"], "tokens": [...]}."""
        return {"kind": self.kind, "lowercase": self.lowercase, "specials": list(SPECIALS),
                "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d) -> "UnitVocab":
        """Inverse of `to_dict`; ValueError naming what is malformed."""
        if not isinstance(d, dict) or d.get("kind") != cls.kind:
            raise ValueError(f"a {cls.noun} vocabulary must be a JSON object with kind '{cls.kind}'")
        if set(d) != {"kind", "lowercase", "specials", "tokens"}:
            raise ValueError(f"a {cls.noun} vocabulary must have the keys 'kind', 'lowercase', 'specials' and "
                             f"'tokens'")
        if d["specials"] != list(SPECIALS):
            raise ValueError(f"vocabulary specials must be {list(SPECIALS)}, got {d['specials']!r}")
        if not isinstance(d["lowercase"], bool):
            raise ValueError("vocabulary 'lowercase' must be true or false")
        if not isinstance(d["tokens"], list):
            raise ValueError("vocabulary 'tokens' must be a list")
        return cls(d["tokens"], lowercase=d["lowercase"])

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and (self.lowercase, self.tokens) == (other.lowercase, other.tokens)

    def __hash__(self) -> int:
        return hash((self.kind, self.lowercase, self.tokens))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, lowercase={self.lowercase})"
