"""Symbol vocabulary: whitespace-separated units kept whole, and one `<EOS>` per line.

The tokenization of every published word perplexity on pre-tokenized corpora (Penn Treebank, WikiText) and
of phoneme strings ("K AE1 T"): a SYMBOL is a maximal run of non-whitespace characters, whitespace only
separates symbols and is never a token, and every line ends with `<EOS>`. A line end ("\\n" inside a
document) is `<EOS>`, and so is a document end, except right after a line end: a document whose text ends
with "\\n" ends with that line's `<EOS>`, as a file iterated line by line has no empty last line. So with
`--eos file` every line of the file, blank ones included, gives one `<EOS>` (the count WikiText's published
figures use); with `--eos lines` or `paragraphs` every non-blank line does.

The literal `<unk>` (case-sensitive; with `lowercase`, after lowercasing) is the `<UNK>` id, as WikiText and
the Penn Treebank write the words they dropped. With `lowercase`, each symbol is lowercased on its own
(`str.lower`), so chunking never changes the ids.

Decoding writes symbols joined by single spaces and a line end at `<EOS>`. Hence, when every symbol of `text`
is in the vocabulary, `decode(encode(text))` is `text` with each line's whitespace runs written as one space
and the spaces at its ends dropped: `"\\n".join(" ".join(line.split()) for line in text.split("\\n"))`.

Ids: `<EOS>` = 0, `<UNK>` = 1, then the kept symbols by count descending, ties by the symbol string
(code-point order). Encoding is one compiled regex plus one dict lookup per symbol.
"""

import re
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

from charlm.text.units import UNK_TEXT, UnitVocab
from charlm.text.vocab import DOC_END, EOS, SPECIALS, UNK

# The token strings that are `<EOS>`: a line end that is also its document's end, a line end, a document end.
LINE_END_AT_DOC_END = "\n" + DOC_END
ENDS = (LINE_END_AT_DOC_END, "\n", DOC_END)
_TOKEN = re.compile(f"{LINE_END_AT_DOC_END}|\n|{DOC_END}|[^\\s{DOC_END}]+")
_SYMBOL = re.compile(f"[^\\s{DOC_END}]+")


def iter_symbol_tokens(pieces: Iterable[str]) -> Iterator[tuple[list[str], str]]:
    """Cut text arriving in pieces (document ends marked by DOC_END) into tokens: symbols and the `ENDS`.

    Yields (tokens, text): the complete tokens of the text read since the last yield and the text they cover
    (whitespace included; `tokens` is empty when `text` is whitespace alone). A symbol or a line end at the
    end of a piece waits for the next one, which may continue the symbol or begin with the document end, so
    the tokens equal those of the whole text cut at once.
    """
    held = ""
    for piece in pieces:
        text = held + piece
        tokens = _TOKEN.findall(text)
        held = ""
        if tokens and (text[-1] == "\n" or not (text[-1].isspace() or text[-1] == DOC_END)):
            held = tokens.pop()  # the last token reaches the end of the text: a suffix of it
        done = text[:len(text) - len(held)]
        if done:
            yield tokens, done
    if held:
        yield _TOKEN.findall(held), held


def _line_end_chars(text: str) -> int:
    """Characters of `text` that an `<EOS>` of their own stands for: document ends and the line ends not
    followed by one."""
    return text.count(DOC_END) + text.count("\n") - text.count(LINE_END_AT_DOC_END)


def count_symbol_tokens(pieces: Iterable[str], *, lowercase: bool = False):
    """Count the symbols of text pieces with document-end markers.

    Returns (counts: symbol -> occurrences, the literal "<unk>" included; n_docs; n_chars: characters of the
    documents; n_tokens: ids of the documents, line ends included, document ends not).
    """
    counts, n_docs, n_chars, n_tokens = Counter(), 0, 0, 0
    for tokens, text in iter_symbol_tokens(pieces):
        counts.update(map(str.lower, tokens) if lowercase else tokens)
        docs = text.count(DOC_END)
        n_docs += docs
        n_chars += len(text) - docs
        n_tokens += len(tokens) - docs
    for end in ENDS:
        counts.pop(end, None)
    return dict(counts), n_docs, n_chars, n_tokens


class SymbolDecoder:
    """Incremental decoding: remembers whether the last id was a symbol, so streamed pieces concatenate to the
    decoding of all ids at once."""

    def __init__(self, vocab: "SymbolVocab", context, eos: str, unk: str):
        context = np.asarray(context, dtype=np.int64).reshape(-1)
        self._vocab = vocab
        self._pieces = np.array((eos, unk) + vocab.tokens, dtype=object)  # (V,) the text of each id
        self._after_symbol = bool(len(context)) and int(context[-1]) != EOS

    def feed(self, ids) -> str:
        """The text of `ids`, given the context and every id fed before."""
        ids = self._vocab.check_ids(ids)
        if not len(ids):
            return ""
        symbol = ids != EOS  # (n,) an `<UNK>` is a symbol whose text is lost
        space = np.concatenate(([self._after_symbol], symbol[:-1])) & symbol
        out = np.empty(2 * len(ids), dtype=object)
        out[0::2] = np.where(space, " ", "")
        out[1::2] = self._pieces[ids]
        self._after_symbol = bool(symbol[-1])
        return "".join(out.tolist())


class SymbolVocab(UnitVocab):
    """A fixed symbol vocabulary; build it with `SymbolVocab.build` (counts as `count_symbol_tokens` gives) or
    load it with `SymbolVocab.from_dict`. Tokens are distinct non-empty strings without whitespace."""

    kind = "symbols"
    noun = "symbol"

    def __init__(self, tokens: Iterable[str], lowercase: bool = False):
        super().__init__(tokens, lowercase)
        self._ids.update(dict.fromkeys(ENDS, EOS))

    def _check_token(self, i: int, token) -> None:
        if not isinstance(token, str) or _SYMBOL.fullmatch(token) is None or token == UNK_TEXT:
            raise ValueError(f"vocabulary token {i} is not a symbol (non-empty, no whitespace): {token!r}")

    def tokenize(self, text: str) -> list[str]:
        """The token strings of `text`, one per id `encode` gives: its symbols (lowercased if the vocabulary
        is; a literal "<unk>" stays "<unk>") and "\\n" for each `<EOS>`."""
        return ["\n" if t in ENDS else t.lower() if self.lowercase else t for t in _TOKEN.findall(text)]

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text`, dtype `id_dtype`: a symbol's id (`<UNK>` when it is not kept), `<EOS>` per line end."""
        return self._ids_of(_TOKEN.findall(text)).astype(self.id_dtype)

    def iter_encode(self, pieces: Iterable[str]) -> Iterator[tuple[np.ndarray, int, int]]:
        """Encode text arriving in pieces (document ends marked by DOC_END): yields (ids, n_chars, unk_chars)
        per step. `n_chars` counts the characters of the documents those ids cover, less those an `<EOS>` of
        their own stands for (line ends and document ends), so the characters plus the `<EOS>` ids are the
        characters of the documents plus one per document end; `unk_chars` counts the characters of the
        symbols that became `<UNK>`. The ids concatenate to the encoding of the whole text."""
        for tokens, text in iter_symbol_tokens(pieces):
            ids = self._ids_of(tokens)
            lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
            n_chars = len(text) - _line_end_chars(text)
            yield ids.astype(self.id_dtype), n_chars, int(lengths[ids == UNK].sum())

    def decoder(self, context=(), eos: str = "\n", unk: str = UNK_TEXT) -> SymbolDecoder:
        """An incremental decoder whose first id follows the ids `context` (empty: a line start)."""
        return SymbolDecoder(self, context, eos, unk)

    def unknown(self, text: str) -> list[str]:
        """Distinct symbols of `text` that encode to `<UNK>`, in first-seen order (the literal "<unk>" is
        meant as `<UNK>` and is not listed)."""
        symbols = _SYMBOL.findall(text)
        if self.lowercase:
            symbols = map(str.lower, symbols)
        return [t for t in dict.fromkeys(symbols) if t not in self._ids and t != UNK_TEXT]

    def token_text(self, i: int) -> str:
        """The display text of id `i`: its symbol, or "<EOS>" / "<UNK>" for the specials."""
        return SPECIALS[i] if i < len(SPECIALS) else self.tokens[i - len(SPECIALS)]

    def char_count(self, ids, *, unk_length: float = 5.0) -> float:
        """Characters of the original text `ids[1:]` stand for, each read after its predecessor: a symbol's
        text plus the space before it when it follows a symbol; `<EOS>` counts 1 (a line end), `<UNK>` counts
        `unk_length`. Exact for text whose symbols are separated by single spaces."""
        ids = self.check_ids(ids)
        if len(ids) < 2:
            return 0.0
        lengths = self._lengths.copy()
        lengths[UNK] = unk_length
        symbol = ids != EOS
        return float(lengths[ids[1:]].sum() + np.count_nonzero(symbol[:-1] & symbol[1:]))

    def __contains__(self, token: str) -> bool:
        return self._ids.get(token, EOS) != EOS
