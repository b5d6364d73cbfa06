"""Corpus files: strict decoding, normalisation and documents (the only document splitter).

Reading is streamed in chunks so a large corpus is never one Python str. Each chunk is decoded strictly
(an invalid byte names its offset and line), a leading BOM is dropped and `\\r\\n` / lone `\\r` become
`\\n` (a `\\r\\n` split across two chunks included). Unicode normalisation is not applied: text is kept
as written.

Documents (`eos_mode`): `file` = the whole text is one document; `lines` = every line that is not blank
(empty or whitespace only) is a document; `paragraphs` = blocks separated by blank lines, inner newlines
kept. The id stream is always `<EOS> doc1 <EOS> doc2 ... docN <EOS>`. (In `lines`/`paragraphs` mode a
single line is held whole, so one enormous line is the exception to bounded memory.) `split_documents`
cuts a str with the same splitter; `charlm.text.cache` keeps id streams on disk. Word tokens
(`charlm.text.words`) and symbols (`charlm.text.symbols`) are cut from the same document pieces; a token
split across two chunks is held back until it is complete, so chunking never changes the ids.
"""

import codecs
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import ConfigError, CorpusError
from charlm.text.symbols import SymbolVocab, count_symbol_tokens
from charlm.text.tokenizer import DOC_END, EOS, KINDS, UNK, Vocab, codepoints
from charlm.text.words import WordVocab, count_word_tokens

EOS_MODES = ("file", "lines", "paragraphs")
# Bytes read per step by default: bounds memory while keeping per-chunk overhead negligible.
CHUNK_BYTES = 1 << 22
_DOC_END_CODE = ord(DOC_END)


@dataclass(frozen=True)
class CharCounts:
    """Character statistics of a corpus: `counts` (char -> occurrences in documents), `n_docs`, `n_chars`."""

    counts: dict
    n_docs: int
    n_chars: int


@dataclass(frozen=True)
class TokenCounts:
    """Token statistics of a corpus: `counts` (token -> occurrences in documents), `n_docs`, `n_chars`
    (characters of the documents, as `count_chars` gives) and `n_tokens` (tokens of the documents, document
    ends not included; for word tokens the separator tokens and joins a full vocabulary emits, for symbols
    the line ends)."""

    counts: dict
    n_docs: int
    n_chars: int
    n_tokens: int


@dataclass(frozen=True)
class EncodedPiece:
    """A piece of an id stream with what it stands for: `ids`, `n_chars` (characters of the documents it
    encodes, document ends not included; for symbols, whose line ends are `<EOS>` ids, line ends neither) and
    `unk_chars` (how many of those became `<UNK>`)."""

    ids: np.ndarray
    n_chars: int
    unk_chars: int


def read_text(path, encoding: str = "utf-8") -> str:
    """The normalised text of a small file (BOM dropped, newlines normalised); may be empty."""
    return "".join(_normalised_pieces(Path(path), encoding, CHUNK_BYTES))


def count_chars(path, *, eos_mode: str = "file", encoding: str = "utf-8", chunk_chars: int = CHUNK_BYTES
                ) -> CharCounts:
    """Count the characters of the documents of a file in one streamed pass.

    Raises CorpusError if the file is unreadable, undecodable, binary or has no documents.
    """
    totals = np.zeros(0, dtype=np.int64)
    for piece in _document_pieces(Path(path), eos_mode, encoding, chunk_chars):
        piece_counts = np.bincount(codepoints(piece))
        if len(piece_counts) > len(totals):
            totals = np.concatenate((totals, np.zeros(len(piece_counts) - len(totals), np.int64)))
        totals[:len(piece_counts)] += piece_counts
    n_docs = int(totals[_DOC_END_CODE])
    totals[_DOC_END_CODE] = 0
    present = np.flatnonzero(totals)
    counts = {chr(c): int(totals[c]) for c in present}
    return CharCounts(counts=counts, n_docs=n_docs, n_chars=int(totals.sum()))


def count_tokens(path, *, tokens: str = "char", eos_mode: str = "file", encoding: str = "utf-8",
                 lowercase: bool = False, chunk_chars: int = CHUNK_BYTES) -> TokenCounts:
    """Count the tokens (`tokens`: one of KINDS) of the documents of a file in one streamed pass.

    `lowercase` (word tokens and symbols only) lowercases every token. Raises CorpusError if the file is
    unreadable, undecodable, binary or has no documents; ConfigError for an unknown kind or lowercase
    characters.
    """
    check_tokens(tokens, lowercase)
    if tokens == "char":
        stats = count_chars(path, eos_mode=eos_mode, encoding=encoding, chunk_chars=chunk_chars)
        return TokenCounts(stats.counts, stats.n_docs, stats.n_chars, stats.n_chars)
    pieces = _document_pieces(Path(path), eos_mode, encoding, chunk_chars)
    count = count_word_tokens if tokens == "word" else count_symbol_tokens
    return TokenCounts(*count(pieces, lowercase=lowercase))


def check_tokens(tokens: str, lowercase: bool = False) -> None:
    """ConfigError unless `tokens` is one of KINDS, and `lowercase` is only asked of word tokens or symbols."""
    if tokens not in KINDS:
        raise ConfigError(f"unknown token kind {tokens!r}; choose one of {', '.join(KINDS)}")
    if lowercase and tokens == "char":
        raise ConfigError("lowercasing applies to word tokens and symbols only (--tokens word or symbols)")


def iter_encoded(path, vocab, *, eos_mode: str = "file", encoding: str = "utf-8",
                 chunk_chars: int = 1 << 20) -> Iterator[np.ndarray]:
    """The id stream of a file in pieces (1-D arrays of `vocab.id_dtype`), without caching.

    `vocab` is a char `Vocab`, a `WordVocab` or a `SymbolVocab`. Concatenated, the pieces equal
    `charlm.text.cache.prepare_corpus(path, ..., vocab=vocab).ids`. `chunk_chars` is the number of bytes
    read per step, so a piece holds about that many ids (words and symbols: fewer, some pieces none).
    """
    for piece in iter_encoded_pieces(path, vocab, eos_mode=eos_mode, encoding=encoding, chunk_chars=chunk_chars):
        yield piece.ids


def iter_encoded_pieces(path, vocab, *, eos_mode: str = "file", encoding: str = "utf-8",
                        chunk_chars: int = 1 << 20) -> Iterator[EncodedPiece]:
    """`iter_encoded` with what each piece stands for (`EncodedPiece`): the cache's single pass."""
    yield EncodedPiece(np.array([EOS], dtype=vocab.id_dtype), 0, 0)
    pieces = _document_pieces(Path(path), eos_mode, encoding, chunk_chars)
    if isinstance(vocab, WordVocab | SymbolVocab):
        for ids, n_chars, unk_chars in vocab.iter_encode(pieces):
            yield EncodedPiece(ids, n_chars, unk_chars)
        return
    for piece in pieces:
        ids = _encode_piece(piece, vocab)
        n_docs = int(np.count_nonzero(ids == EOS))
        yield EncodedPiece(ids, len(ids) - n_docs, int(np.count_nonzero(ids == UNK)))


def split_documents(text: str, eos_mode: str) -> list[str]:
    """The documents of a normalised text (as `read_text` returns it), cut exactly as a corpus file is.

    `split_documents(read_text(path), mode)` lists the documents whose ids `iter_encoded(path, ...)` streams.
    Raises ValueError if `text` holds the lone surrogate U+D800 (strict decoding never produces one).
    """
    check_eos_mode(eos_mode)
    if DOC_END in text:
        raise ValueError("text holds U+D800, the document-end marker; strictly decoded text never does")
    marked = "".join(_split_pieces(iter([text] if text else []), eos_mode))
    return marked.split(DOC_END)[:-1]  # every document ends with a marker; the rest is trailing blank text


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with _open_corpus(Path(path)) as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def codec_name(encoding: str) -> str:
    """The canonical name of an encoding (`"UTF8"` -> `"utf-8"`); ConfigError if Python does not know it."""
    return _codec(encoding).name


# -- reading --------------------------------------------------------------------------------------------


def _codec(encoding: str) -> codecs.CodecInfo:
    try:
        return codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r} (try utf-8, latin-1, cp1252, utf-16)") from None


def _open_corpus(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory, not a corpus file") from None
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _normalised_pieces(path: Path, encoding: str, chunk_bytes: int) -> Iterator[str]:
    """Decoded text of the file in pieces: strict, leading BOM dropped, `\\r\\n` and `\\r` -> `\\n`."""
    codec = _codec(encoding)
    decoder = codec.incrementaldecoder("strict")
    # In ASCII-compatible encodings a NUL byte is a NUL character; say "binary" before any decoding error.
    ascii_compatible = "\n\x00".encode(codec.name) == b"\n\x00"
    chunk_start = newlines_before = 0
    held_cr = ""  # a trailing "\r" waits for the next chunk: it may be the first half of "\r\n"
    at_start = True
    with _open_corpus(path) as f:
        while True:
            raw = f.read(chunk_bytes)
            final = not raw
            if ascii_compatible and b"\x00" in raw:
                _raise_binary(path, chunk_start + raw.index(b"\x00"), raw if chunk_start == 0 else b"")
            pending = decoder.getstate()[0]
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as exc:
                _raise_undecodable(path, codec.name, exc, chunk_start - len(pending),
                                   newlines_before if ascii_compatible else None)
            if "\x00" in text:
                _raise_binary(path, chunk_start)
            if at_start and text:
                text = text.removeprefix("\ufeff")
                at_start = False
            text = held_cr + text
            held_cr = ""
            if text.endswith("\r") and not final:
                text, held_cr = text[:-1], "\r"
            if text:
                yield text.replace("\r\n", "\n").replace("\r", "\n")
            if final:
                return
            chunk_start += len(raw)
            newlines_before += raw.count(b"\n")


def _raise_binary(path: Path, offset: int, head: bytes = b""):
    """`head`: the file's first bytes, when known; UTF-16 text is full of NULs in an ASCII codec's eyes."""
    if _looks_like_utf16(head):
        raise _utf16_error(path)
    raise CorpusError(f"{path}: looks like a binary file (NUL byte near byte {offset}); charlm reads text corpora")


def _utf16_error(path: Path) -> CorpusError:
    return CorpusError(f"{path}: looks like UTF-16 text (a byte-order mark, or NUL bytes between the characters); "
                       f"pass --encoding utf-16")


def _looks_like_utf16(head: bytes) -> bool:
    """A UTF-16 byte-order mark, or ASCII characters alternating with NULs in the first 64 bytes."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    pairs = [head[i:i + 2] for i in range(0, min(len(head), 64) - 1, 2)]
    return len(pairs) >= 4 and (all(p[1] == 0 and p[0] != 0 for p in pairs)
                                or all(p[0] == 0 and p[1] != 0 for p in pairs))


def _raise_undecodable(path: Path, codec_name: str, exc: UnicodeDecodeError, data_start: int,
                       newlines_before: int | None):
    if data_start == 0 and _looks_like_utf16(exc.object):  # a BOM with no NUL after it (non-ASCII text)
        raise _utf16_error(path)
    bad = exc.object[exc.start:exc.end]
    where = f"byte {data_start + exc.start}"
    if newlines_before is not None:
        line = newlines_before + exc.object[:exc.start].count(b"\n") + 1
        where += f" (line {line})"
    raise CorpusError(f"{path}: not valid {codec_name} at {where}: {bad!r} ({exc.reason}); "
                      f"if the file uses another encoding, pass --encoding (e.g. --encoding latin-1)")


def _document_pieces(path: Path, eos_mode: str, encoding: str, chunk_bytes: int) -> Iterator[str]:
    """Document text of a file in pieces, each document followed by `DOC_END`; CorpusError if there is none."""
    check_eos_mode(eos_mode)
    has_docs = yield from _split_pieces(_normalised_pieces(path, encoding, chunk_bytes), eos_mode)
    if not has_docs:
        raise CorpusError(f"{path}: corpus is empty (no text after removing the BOM and whitespace)")


def _split_pieces(pieces: Iterator[str], eos_mode: str):
    """The one document splitter: normalised text pieces in, document pieces out, each document followed by
    `DOC_END`. Returns (as the generator's value) whether there was any document.

    A line is blank when it is empty or whitespace only (`str.isspace`).
    """
    has_docs = False
    if eos_mode == "file":
        for text in pieces:
            has_docs = has_docs or not text.isspace()
            yield text
        if has_docs:
            yield DOC_END
        return has_docs
    in_paragraph = False
    for lines in _whole_lines(pieces):
        out = []
        for line in lines:
            if not line or line.isspace():
                if in_paragraph:
                    out.append(DOC_END)
                in_paragraph = False
            elif eos_mode == "lines":
                out += (line, DOC_END)
            else:
                out += ("\n", line) if in_paragraph else (line,)
                in_paragraph = True
        if out:
            has_docs = True
            yield "".join(out)
    if in_paragraph:
        yield DOC_END
    return has_docs


def check_eos_mode(eos_mode: str) -> None:
    """ConfigError unless `eos_mode` is one of EOS_MODES."""
    if eos_mode not in EOS_MODES:
        raise ConfigError(f"unknown document mode {eos_mode!r}; choose one of {', '.join(EOS_MODES)}")


def _whole_lines(pieces: Iterator[str]) -> Iterator[list[str]]:
    """Regroup text pieces into lists of complete lines (without their "\\n"); the last may lack one."""
    partial = ""
    for text in pieces:
        lines = (partial + text).split("\n")
        partial = lines.pop()
        if lines:
            yield lines
    if partial:
        yield [partial]


def _encode_piece(piece: str, vocab: Vocab) -> np.ndarray:
    codes = codepoints(piece)
    ids = vocab.encode_codepoints(codes)
    ids[codes == _DOC_END_CODE] = EOS
    return ids
