"""Word vocabulary: words, punctuation marks and the whitespace between them, reversibly.

Token classes, matched left to right over the (normalised) document text:
- the literal `<unk>` (case-sensitive) is the `<UNK>` id, never three characters;
- a WORD is a letter or digit of any script (`[^\\W_]`) followed by letters, digits and combining marks
  (so decomposed accents, Devanagari vowel signs and the like stay inside their word);
- a PUNCT is any single other non-space character (`_` included);
- a whitespace run between tokens is a SEPARATOR.
A separator is implied where it is the default and is a token where it is not. The default before a content
token t (WORD, PUNCT or `<UNK>`) that follows a content token is "" if t is PUNCT, else " "; nothing is
implied at the start of a document or after a separator token. Other whitespace is its own token ("\\n",
"  ", " " before a PUNCT, ...), and two content tokens with no whitespace between them where the default is
" " are joined by the JOIN token "" (shown as `<join>`). `<UNK>` counts as a WORD for the default (the decoder
cannot know what it replaced), and the encoder decides separators for an out-of-vocabulary token as the
decoder will see it, so only that token's text is lost. A whitespace run outside the vocabulary is spelt with
the vocabulary's separator tokens (longest first); whitespace none of them covers is dropped, leaving the
default. Hence `decode(encode(text)) == text` whenever every token of `text` is in the vocabulary.

With `lowercase`, each token is lowercased on its own (`str.lower`), so a token never depends on the text
around it and a file read in chunks gives the same ids as one read whole.

Ids: `<EOS>` = 0, `<UNK>` = 1, then the kept tokens by count descending, ties by the token string (code-point
order). Encoding is one compiled regex plus one dict lookup per token, the separator rules numpy masks.
"""

import functools
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from charlm.text.units import UNK_TEXT, UnitVocab
from charlm.text.vocab import DOC_END, EOS, SPECIALS, UNK, codepoints

JOIN = ""
JOIN_TEXT = "<join>"
# Token classes. BOUNDARY is a document end (and the start of the stream); an <UNK> is a WORD.
BOUNDARY, SEP, WORD, PUNCT = 0, 1, 2, 3
# A token whose start lies this many characters before the end of the text read so far is complete, and so is
# its class: the longest lookahead the regex needs is "<unk>" after its "<".
_LOOKAHEAD = len(UNK_TEXT)


@functools.cache
def _token_regex() -> re.Pattern:
    """The tokenizer's regex; the combining-mark class is built from the Unicode database once per process."""
    marks, start = [], None
    for code in range(sys.maxunicode + 2):
        is_mark = code <= sys.maxunicode and unicodedata.category(chr(code))[0] == "M"
        if is_mark and start is None:
            start = code
        elif not is_mark and start is not None:
            marks.append(f"{re.escape(chr(start))}-{re.escape(chr(code - 1))}")
            start = None
    word = rf"[^\W_]+(?:[{''.join(marks)}]+[^\W_]*)*"
    return re.compile(rf"\s+|{re.escape(UNK_TEXT)}|{word}|\S")


def token_class(token: str) -> int | None:
    """SEP, WORD or PUNCT for a string that can be a vocabulary token, else None."""
    if token == JOIN or token.isspace():
        return SEP
    if token == UNK_TEXT or token == DOC_END:
        return None
    if _token_regex().fullmatch(token) is None:
        return None
    return WORD if len(token) > 1 or re.match(r"[^\W_]", token) else PUNCT


@dataclass(frozen=True)
class Segments:
    """A text cut into tokens: `tokens` (strings covering the text in order), `classes` (int8, one per token:
    BOUNDARY for the document-end marker, SEP, WORD (also the literal "<unk>"), PUNCT), `ends` (int64,
    each token's end offset in the text) and `single_space` (bool, the token is exactly " ")."""

    tokens: list
    classes: np.ndarray
    ends: np.ndarray
    single_space: np.ndarray


def segment(text: str) -> Segments:
    """Cut `text` into tokens with the regex and classify each by its first character."""
    tokens = _token_regex().findall(text)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    ends = np.cumsum(lengths)
    firsts = codepoints(text)[ends - lengths] if len(tokens) else np.zeros(0, np.uint32)
    distinct, inverse = np.unique(firsts, return_inverse=True)
    table = np.array([_first_char_class(chr(c)) for c in distinct], dtype=np.int8)
    classes = table[inverse.reshape(-1)] if len(tokens) else np.zeros(0, np.int8)
    classes[(classes == PUNCT) & (lengths > 1)] = WORD  # only "<unk>" is longer than one character
    return Segments(tokens=tokens, classes=classes, ends=ends, single_space=(lengths == 1) & (firsts == ord(" ")))


def _first_char_class(char: str) -> int:
    if char == DOC_END:
        return BOUNDARY
    if char.isspace():
        return SEP
    return WORD if re.match(r"[^\W_]", char) else PUNCT


def iter_segments(pieces: Iterable[str]) -> Iterator[tuple[Segments, int]]:
    """Segment text arriving in pieces: yields (segments, done) where the first `done` tokens are complete and
    the class of token `done` (if any) is known; the rest is cut again with the next piece, so the tokens
    equal those of the whole text cut at once."""
    held = ""
    for piece in pieces:
        text = held + piece
        seg = segment(text)
        done = int(np.searchsorted(seg.ends, len(text) - _LOOKAHEAD, side="right"))
        if done:
            yield seg, done
        held = text[int(seg.ends[done - 1]):] if done else text
    if held:
        seg = segment(held)
        yield seg, len(seg.tokens)


def _separator_plan(classes: np.ndarray, is_space: np.ndarray, prev_class: int, next_class: int):
    """Which separators the decoder implies: returns (join, implied), bool arrays over the tokens.

    - classes: each token's class as the decoder will see it; prev_class / next_class: the tokens around
    - join[i]: content token i follows a content token with no whitespace between, and the default is " "
    - implied[i]: token i is a single " " between content tokens where the default is " "
    """
    prev = np.concatenate(([prev_class], classes[:-1])).astype(np.int8)
    nxt = np.concatenate((classes[1:], [next_class])).astype(np.int8)
    after_content = prev >= WORD
    join = after_content & (classes == WORD)
    implied = is_space & (classes == SEP) & after_content & (nxt == WORD)
    return join, implied


def count_word_tokens(pieces: Iterable[str], *, lowercase: bool = False):
    """Count the tokens a vocabulary holding all of them would emit, over text pieces with document-end markers.

    Returns (counts: token -> occurrences, the literal "<unk>" included; n_docs; n_chars: characters of the
    documents; n_tokens: tokens of the documents, separators and joins included, document ends not).
    """
    counts, n_docs, n_chars, n_tokens = Counter(), 0, 0, 0
    prev_class = BOUNDARY
    for seg, done in iter_segments(pieces):
        emitted, prev_class, chars = _emitted(seg, done, prev_class, lowercase)
        counts.update(emitted)
        n_docs += int(np.count_nonzero(seg.classes[:done] == BOUNDARY))
        n_chars += chars
        n_tokens += len(emitted)
    return dict(counts), n_docs, n_chars, n_tokens


def _emitted(seg: Segments, done: int, prev_class: int, lowercase: bool):
    """(token strings emitted in order, joins included; class of the last token; characters of the documents)
    for the first `done` tokens of `seg`, read after a token of class `prev_class`, all tokens known."""
    classes = seg.classes[:done]
    next_class = int(seg.classes[done]) if done < len(seg.tokens) else BOUNDARY
    join, implied = _separator_plan(classes, seg.single_space[:done], prev_class, next_class)
    keep = ~implied & (classes != BOUNDARY)
    texts = np.empty((done, 2), dtype=object)
    texts[:, 0] = JOIN
    texts[:, 1] = list(map(str.lower, seg.tokens[:done])) if lowercase else seg.tokens[:done]
    tokens = texts.reshape(-1)[np.stack((join, keep), axis=1).reshape(-1)].tolist()
    lengths = np.diff(seg.ends[:done], prepend=0)
    chars = int(lengths[classes != BOUNDARY].sum())
    return tokens, int(classes[-1]), chars


class WordDecoder:
    """Incremental decoding: remembers the class of the last id so streamed pieces concatenate to the
    decoding of all ids at once."""

    def __init__(self, vocab: "WordVocab", context, eos: str, unk: str):
        context = np.asarray(context, dtype=np.int64).reshape(-1)
        self._vocab = vocab
        self._pieces = np.array((eos, unk) + vocab.tokens, dtype=object)  # (V,) the text of each id
        self._prev = int(vocab.classes[context[-1]]) if len(context) else BOUNDARY

    def feed(self, ids) -> str:
        """The text of `ids`, given the context and every id fed before."""
        ids = self._vocab.check_ids(ids)
        if not len(ids):
            return ""
        classes = self._vocab.classes[ids]
        prev = np.concatenate(([self._prev], classes[:-1]))
        space = (prev >= WORD) & (classes == WORD)
        out = np.empty(2 * len(ids), dtype=object)
        out[0::2] = np.where(space, " ", "")
        out[1::2] = self._pieces[ids]
        self._prev = int(classes[-1])
        return "".join(out.tolist())


class WordVocab(UnitVocab):
    """A fixed word vocabulary; build it with `WordVocab.build` (counts as `count_word_tokens` gives) or load it
    with `WordVocab.from_dict`. Tokens are valid tokens (see `token_class`)."""

    kind = "word"
    noun = "word"

    def __init__(self, tokens: Iterable[str], lowercase: bool = False):
        super().__init__(tokens, lowercase)
        # (V,) the class of each id as the decoder sees it
        self.classes = np.array([BOUNDARY, WORD] + [token_class(t) for t in self.tokens], dtype=np.int8)
        self._ids[DOC_END] = EOS
        self._join = self._ids.get(JOIN, -1)
        self._separators = sorted((t for t in self.tokens if t and t.isspace()), key=len, reverse=True)

    def _check_token(self, i: int, token) -> None:
        if not isinstance(token, str) or token_class(token) is None:
            raise ValueError(f"vocabulary token {i} is not a word, punctuation mark or separator: {token!r}")

    def tokenize(self, text: str) -> list[str]:
        """The token strings of `text` (separator tokens and joins included, implied separators not), as a
        vocabulary holding all of them encodes it; a literal "<unk>" stays "<unk>"."""
        seg = segment(text)
        return _emitted(seg, len(seg.tokens), BOUNDARY, self.lowercase)[0] if seg.tokens else []

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text` read as the content of one document, dtype `id_dtype`; unknown tokens -> `<UNK>`."""
        seg = segment(text)
        return self._encode_segments(seg, len(seg.tokens), BOUNDARY)[0]

    def iter_encode(self, pieces: Iterable[str]) -> Iterator[tuple[np.ndarray, int, int]]:
        """Encode text arriving in pieces (document ends marked by DOC_END, encoded as `<EOS>`): yields
        (ids, n_chars, unk_chars) per step, the characters of the documents those ids encode and how many of
        them became `<UNK>`. The ids concatenate to the encoding of the whole text."""
        prev_class = BOUNDARY
        for seg, done in iter_segments(pieces):
            ids, prev_class, n_chars, unk_chars = self._encode_segments(seg, done, prev_class)
            yield ids, n_chars, unk_chars

    def _encode_segments(self, seg: Segments, done: int, prev_class: int) -> tuple[np.ndarray, int, int, int]:
        """Encode the first `done` tokens of `seg`, read after a token of class `prev_class`.

        Returns (ids, the class of the last token as the decoder sees it, characters of the documents those
        tokens cover, characters of the words and marks among them that became `<UNK>`).
        """
        if not done:
            return np.zeros(0, self.id_dtype), prev_class, 0, 0
        tokens = seg.tokens[:done]
        ids = self._ids_of(tokens)
        classes = seg.classes[:done].copy()
        unknown = ids == UNK
        classes[unknown & (classes == PUNCT)] = WORD  # the decoder reads an <UNK> as a word
        next_class = int(seg.classes[done]) if done < len(seg.tokens) else BOUNDARY
        if next_class == PUNCT and self._ids_of(seg.tokens[done:done + 1])[0] == UNK:
            next_class = WORD
        join, implied = _separator_plan(classes, seg.single_space[:done], prev_class, next_class)
        join_slot = np.where(join, self._join, -1)
        token_slot = np.where(implied, -1, ids)
        spelt = np.flatnonzero(unknown & (classes == SEP) & ~implied)
        token_slot[spelt] = -1
        slots = np.stack((join_slot, token_slot), axis=1).reshape(-1)
        if len(spelt):
            spellings = [self._spell(tokens[i]) for i in spelt]
            where = np.repeat(2 * spelt + 1, [len(s) for s in spellings])
            slots = np.insert(slots, where, [i for s in spellings for i in s])
        lengths = np.diff(seg.ends[:done], prepend=0)
        n_chars = int(lengths[classes != BOUNDARY].sum())
        unk_chars = int(lengths[unknown & (classes >= WORD)].sum())
        return slots[slots >= 0].astype(self.id_dtype), int(classes[-1]), n_chars, unk_chars

    def _spell(self, run: str) -> list[int]:
        """Ids of the separator tokens that spell an out-of-vocabulary whitespace run, longest first;
        characters none of them covers are dropped."""
        out, i = [], 0
        while i < len(run):
            token = next((s for s in self._separators if run.startswith(s, i)), None)
            if token is None:
                i += 1
            else:
                out.append(self._ids[token])
                i += len(token)
        return out

    def decoder(self, context=(), eos: str = "\n", unk: str = UNK_TEXT) -> WordDecoder:
        """An incremental decoder whose first id follows the ids `context` (empty: a document start)."""
        return WordDecoder(self, context, eos, unk)

    def unknown(self, text: str) -> list[str]:
        """Distinct words and punctuation marks of `text` that encode to `<UNK>`, in first-seen order (the
        literal "<unk>" is meant as `<UNK>` and is not listed)."""
        seg = segment(text)
        content = np.array(seg.tokens, dtype=object)[seg.classes >= WORD].tolist() if seg.tokens else []
        if self.lowercase:
            content = map(str.lower, content)
        return [t for t in dict.fromkeys(content) if t not in self._ids and t != UNK_TEXT]

    def token_text(self, i: int) -> str:
        """The display text of id `i`: its token, "<EOS>" / "<UNK>" for the specials, "<join>" for JOIN."""
        if i < len(SPECIALS):
            return SPECIALS[i]
        token = self.tokens[i - len(SPECIALS)]
        return JOIN_TEXT if token == JOIN else token

    def char_count(self, ids, *, unk_length: float = 5.0) -> float:
        """Characters of the original text `ids[1:]` stand for, each read after its predecessor: the implied
        separator plus the token's text; `<EOS>` counts 1 (a document end), `<UNK>` counts `unk_length`."""
        ids = self.check_ids(ids)
        if len(ids) < 2:
            return 0.0
        lengths = self._lengths.copy()
        lengths[UNK] = unk_length
        classes = self.classes[ids]
        space = (classes[:-1] >= WORD) & (classes[1:] == WORD)
        return float(lengths[ids[1:]].sum() + np.count_nonzero(space))

    def __contains__(self, token: str) -> bool:
        return token in self._ids and token != DOC_END
