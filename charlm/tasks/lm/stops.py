"""Stop strings: when a generated sample has written one, it ends (the string is kept in its text).

A character vocabulary matches stop strings as id sequences (one id per character; a newline the
vocabulary lacks stands for `<EOS>`). A word vocabulary matches them on the decoded text, so a stop string
may span several tokens or lie inside one. Either way a match may start in the prime but must end in a
generated id. A matcher follows the batch rows of `charlm.tasks.lm.sampling.generate_ids`: `push(ids)`
appends one id per row and says which rows just completed a stop string, `keep(rows)` follows the rows
that live on (beam search repeats rows).
"""

import copy
from collections.abc import Sequence

import numpy as np

from charlm.text.tokenizer import EOS, UNK


class _StopMatcher:
    """Finds, per batch row, whether the ids just generated complete one of the stop sequences."""

    def __init__(self, stops: list[np.ndarray], history: np.ndarray, rows: int):
        self.stops = [np.asarray(s, dtype=np.int64) for s in stops if len(s)]
        width = max((len(s) for s in self.stops), default=0)
        window = np.full(width, -1, dtype=np.int64)
        tail = np.asarray(history, dtype=np.int64)[-width:] if width else history[:0]
        window[width - len(tail):] = tail
        self.window = np.tile(window, (rows, 1))  # (B, M) the last M ids of each row

    def push(self, ids: np.ndarray) -> np.ndarray:
        """Append ids (B,); return bool (B,): rows whose window, with the ids appended, ends with a stop sequence."""
        hit = np.zeros(len(ids), dtype=bool)
        if not self.stops:
            return hit
        self.window[:, :-1] = self.window[:, 1:]
        self.window[:, -1] = ids
        for s in self.stops:
            hit |= np.all(self.window[:, -len(s):] == s, axis=1)
        return hit

    def keep(self, rows: np.ndarray) -> None:
        self.window = self.window[rows]


class TextStops:
    """Stop strings matched against the decoded text (word vocabularies), for `generate_ids`'s `stops`.

    A stop string may span several tokens or lie inside one; a match counts when it ends in the text of a
    generated id, so it may start in the prime but never lies wholly inside it.
    - vocab: gives `decoder(context)`, whose `feed(ids)` returns the text ids add after what it has read
    - stops: the stop strings (empty ones are ignored)
    - prime: the text read before generating; context: its ids (`<EOS>` then the prime), of shape (n,)
    """

    def __init__(self, vocab, stops: Sequence[str], *, prime: str, context: np.ndarray):
        self.vocab, self.context = vocab, np.asarray(context)
        self.stops = [s for s in stops if s]
        self.width = max((len(s) for s in self.stops), default=0)
        self.tail = prime[max(0, len(prime) - self.width + 1):] if self.width > 1 else ""

    def start(self, rows: int) -> "_TextMatcher":
        """A matcher for `rows` batch rows, each having read the context."""
        return _TextMatcher(self, rows)


class _TextMatcher:
    """Per batch row, a decoder and the tail of the decoded text (shorter than the longest stop string)."""

    def __init__(self, rule: TextStops, rows: int):
        self.rule = rule
        self.decoders = [rule.vocab.decoder(context=rule.context) for _ in range(rows if rule.stops else 0)]
        self.tails = [rule.tail] * len(self.decoders)

    def push(self, ids: np.ndarray) -> np.ndarray:
        """Append ids (B,); return bool (B,): rows whose new text completes a stop string."""
        hit = np.zeros(len(ids), dtype=bool)
        if not self.rule.stops:
            return hit
        keep = self.rule.width - 1
        for r, i in enumerate(np.asarray(ids).tolist()):
            piece = self.decoders[r].feed([i])
            text = self.tails[r] + piece
            # only matches that end inside `piece`: the tail alone is shorter than any stop string
            hit[r] = any(s in text[max(0, len(text) - len(piece) - len(s) + 1):] for s in self.rule.stops)
            self.tails[r] = text[max(0, len(text) - keep):] if keep else ""
        return hit

    def keep(self, rows: np.ndarray) -> None:
        """Keep these rows (a boolean mask, or indices: a repeated row gets its own copy of the decoder)."""
        if not self.rule.stops:
            return
        rows = np.arange(len(self.decoders))[rows].tolist()
        seen = set()
        decoders = []
        for r in rows:
            # a decoder's state is what it has read; a shallow copy reads on independently
            decoders.append(copy.copy(self.decoders[r]) if r in seen else self.decoders[r])
            seen.add(r)
        self.decoders = decoders
        self.tails = [self.tails[r] for r in rows]


def start_matcher(stops, context: np.ndarray, rows: int):
    """The matcher of `stops` (id sequences, or a `TextStops`) for `rows` rows that read `context`."""
    if isinstance(stops, TextStops):
        return stops.start(rows)
    return _StopMatcher(list(stops), np.asarray(context)[1:], rows)


def _reachable(s: str, missing: list[str], why_missing: str, warn) -> bool:
    """True when stop string `s` can appear; else warn (naming the `missing` characters through the
    `why_missing` template) and return False. An empty string never ends a sample."""
    if s and not missing:
        return True
    if warn is not None:
        why = "it is empty" if not s else why_missing.format(", ".join(repr(c) for c in missing))
        warn(f"stop string {s!r} can never appear ({why}); ignored")
    return False


def encode_stops(vocab, stops, *, warn=None) -> list[np.ndarray]:
    """Id sequences of the stop strings (character vocabularies); a newline the vocabulary lacks (lines
    mode) stands for `<EOS>`.

    A stop string the model cannot produce is dropped with a warning.
    """
    out = []
    for s in stops:
        unknown = [c for c in vocab.unknown(s) if c != "\n"]
        if not _reachable(s, unknown, "{} not in the vocabulary", warn):
            continue
        ids = np.asarray(vocab.encode(s), dtype=np.int64)
        if "\n" not in vocab:
            ids[np.array([c == "\n" for c in s])] = EOS
        out.append(ids)
    return out


def text_stops(vocab, stops, *, prime: str, context: np.ndarray, allow_unk: bool = False,
               warn=None) -> TextStops:
    """The stop strings of a word vocabulary as a `TextStops`.

    A stop string holding a character that no token's text can produce (nor a space or newline, which
    separators and `<EOS>` write, nor `<unk>` when `<UNK>` may be generated) is dropped with a warning.
    """
    producible = set(" \n").union(*vocab.tokens)
    if allow_unk:
        producible.update(vocab.decode([UNK]))
    kept = []
    for s in stops:
        if _reachable(s, sorted(set(s) - producible), "no token holds {}", warn):
            kept.append(s)
    return TextStops(vocab, kept, prime=prime, context=context)


def stop_rule(vocab, stops, *, prime: str, context: np.ndarray, allow_unk: bool = False, warn=None):
    """The stop strings as `generate_ids` takes them: a char vocabulary's as id sequences
    (`encode_stops`), a word vocabulary's as a `TextStops` on the decoded text (`text_stops`)."""
    if vocab.kind == "char":
        return encode_stops(vocab, stops, warn=warn)
    return text_stops(vocab, stops, prime=prime, context=context, allow_unk=allow_unk, warn=warn)
