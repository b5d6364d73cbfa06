"""Corpus files: strict decoding, normalisation, documents, and the memory-mapped id cache.

Reading is streamed in chunks so a large corpus is never one Python str. Each chunk is decoded strictly
(an invalid byte names its offset and line), a leading BOM is dropped and `\\r\\n` / lone `\\r` become
`\\n` (a `\\r\\n` split across two chunks included). Unicode normalisation is not applied: text is kept
as written.

Documents (`eos_mode`): `file` = the whole text is one document; `lines` = every line that is not blank
(empty or whitespace only) is a document; `paragraphs` = blocks separated by blank lines, inner newlines
kept. The id stream is always `<EOS> doc1 <EOS> doc2 ... docN <EOS>`. (In `lines`/`paragraphs` mode a
single line is held whole, so one enormous line is the exception to bounded memory.)

`prepare_corpus` caches the ids of a file in `<cache dir>/corpus/<key>.ids` (raw `vocab.id_dtype`) with a
JSON sidecar `<key>.json`; the key hashes the file's bytes and every option that changes the ids. The
cache is pruned, least recently used first, to `CACHE_MAX_BYTES` whenever an entry is added.
"""

import codecs
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import ConfigError, CorpusError
from charlm.text.tokenizer import EOS, UNK, Vocab, codepoints

EOS_MODES = ("file", "lines", "paragraphs")
CACHE_FORMAT = 1
# Marks the end of a document inside normalised text. A lone surrogate cannot come out of a strict decoder,
# so it never collides with a real character; it becomes `<EOS>` when encoded.
_DOC_END = "\ud800"
_DOC_END_CODE = 0xD800
_PREPARE_CHUNK = 1 << 22


@dataclass(frozen=True)
class CharCounts:
    """Character statistics of a corpus: `counts` (char -> occurrences in documents), `n_docs`, `n_chars`."""

    counts: dict
    n_docs: int
    n_chars: int


@dataclass(frozen=True, eq=False)  # equality over a memmap would be elementwise and ambiguous
class Corpus:
    """A prepared corpus.

    - ids: memory-mapped id stream, shape (1 + n_chars + n_docs,), dtype `vocab.id_dtype`
    - counts: the character counts the vocabulary was built from, or None when `vocab=` was given
    - n_unk: how many ids are `<UNK>` (characters folded by min_count/max_vocab or unknown to a given vocab)
    """

    ids: np.ndarray
    vocab: Vocab
    eos_mode: str
    encoding: str
    sha256: str
    n_docs: int
    n_chars: int
    n_unk: int
    path: Path
    counts: dict | None
    cache_path: Path


def default_cache_dir() -> Path:
    """`$CHARLM_CACHE_DIR`, else `~/.cache/charlm`."""
    return Path(os.environ.get("CHARLM_CACHE_DIR") or Path.home() / ".cache" / "charlm")


def read_text(path, encoding: str = "utf-8") -> str:
    """The normalised text of a small file (BOM dropped, newlines normalised); may be empty."""
    return "".join(_normalised_pieces(Path(path), encoding, _PREPARE_CHUNK))


def count_chars(path, *, eos_mode: str = "file", encoding: str = "utf-8", chunk_chars: int = _PREPARE_CHUNK
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


def iter_encoded(path, vocab: Vocab, *, eos_mode: str = "file", encoding: str = "utf-8",
                 chunk_chars: int = 1 << 20) -> Iterator[np.ndarray]:
    """The id stream of a file in pieces (1-D arrays of `vocab.id_dtype`), without caching.

    Concatenated, the pieces equal `prepare_corpus(path, ..., vocab=vocab).ids`. `chunk_chars` is the number
    of bytes read per step, so a piece holds about that many ids.
    """
    yield np.array([EOS], dtype=vocab.id_dtype)
    for piece in _document_pieces(Path(path), eos_mode, encoding, chunk_chars):
        yield _encode_piece(piece, vocab)


def prepare_corpus(path, *, eos_mode: str = "file", encoding: str = "utf-8", min_count: int = 1,
                   max_vocab: int | None = None, vocab: Vocab | None = None, cache_dir=None,
                   chunk_chars: int = _PREPARE_CHUNK) -> Corpus:
    """Encode a corpus file into a cached, memory-mapped id stream (instant when the cache is warm).

    - vocab: use this vocabulary (fine-tuning, scoring) instead of building one from the file's counts
    - cache_dir: defaults to `default_cache_dir()`
    - chunk_chars: bytes read per step (bounds memory; tests use tiny chunks)
    Raises CorpusError for unreadable, undecodable, binary or empty files.
    """
    path = Path(path)
    _check_eos_mode(eos_mode)
    codec_name = _codec(encoding).name
    sha256 = file_sha256(path)
    options = {"format": CACHE_FORMAT, "sha256": sha256, "eos_mode": eos_mode, "encoding": codec_name,
               "min_count": min_count, "max_vocab": max_vocab, "vocab": vocab.to_dict() if vocab else None}
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
    entry_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry_dir = entry_dir / "corpus"
    ids_path, meta_path = entry_dir / f"{key}.ids", entry_dir / f"{key}.json"

    meta = _load_cache_entry(ids_path, meta_path, options)
    if meta is None:
        counts = None
        if vocab is None:
            counts = count_chars(path, eos_mode=eos_mode, encoding=encoding, chunk_chars=chunk_chars).counts
            vocab = Vocab.build(counts, min_count=min_count, max_vocab=max_vocab)
        meta = _write_cache_entry(path, ids_path, meta_path, options, vocab, counts, chunk_chars)
        prune_cache(entry_dir, CACHE_MAX_BYTES, keep=key)
    else:
        with contextlib.suppress(OSError):  # the sidecar's mtime is the entry's last use (LRU pruning)
            os.utime(meta_path)
    built_vocab = Vocab.from_dict(meta["vocab"])
    ids = np.memmap(ids_path, dtype=built_vocab.id_dtype, mode="r", shape=(meta["n_ids"],))
    return Corpus(ids=ids, vocab=built_vocab, eos_mode=eos_mode, encoding=encoding, sha256=sha256,
                  n_docs=meta["n_docs"], n_chars=meta["n_chars"], n_unk=meta["n_unk"], path=path,
                  counts=meta["counts"], cache_path=ids_path)


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with _open_corpus(Path(path)) as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


# -- cache ----------------------------------------------------------------------------------------------

# Entries are pruned least recently used first once the cache holds more than this (the entry just written
# always stays, however large).
CACHE_MAX_BYTES = 4 << 30


def prune_cache(entry_dir: Path, max_bytes: int, *, keep: str | None = None) -> list[str]:
    """Delete the least recently used cache entries (`<key>.ids` + `<key>.json`, or either alone, left by a
    crash between the two writes) until the directory holds at most `max_bytes`; never the entry `keep`.
    Returns the deleted keys. A process still reading a deleted entry keeps its memory map (POSIX unlink)."""
    last_use, size = {}, {}
    for path in [*Path(entry_dir).glob("*.ids"), *Path(entry_dir).glob("*.json")]:  # sidecars last: their
        try:                                                                         # mtime marks a use
            info = path.stat()
        except OSError:  # deleted meanwhile by another process
            continue
        last_use[path.stem] = info.st_mtime
        size[path.stem] = size.get(path.stem, 0) + info.st_size
    total = sum(size.values())
    deleted = []
    for key in sorted(last_use, key=last_use.get):  # oldest use first
        if total <= max_bytes:
            break
        if key == keep:
            continue
        for suffix in (".ids", ".json"):
            with contextlib.suppress(FileNotFoundError):
                (Path(entry_dir) / f"{key}{suffix}").unlink()
        total -= size[key]
        deleted.append(key)
    return deleted


def _load_cache_entry(ids_path: Path, meta_path: Path, options: dict) -> dict | None:
    """The sidecar of a complete, consistent cache entry, or None (missing or damaged: rebuild it)."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        vocab = Vocab.from_dict(meta["vocab"])
        complete = meta["options"] == options and ids_path.stat().st_size == meta["n_ids"] * vocab.id_dtype.itemsize
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if complete else None


def _write_cache_entry(path: Path, ids_path: Path, meta_path: Path, options: dict, vocab: Vocab,
                       counts: dict | None, chunk_chars: int) -> dict:
    """Encode the file into `ids_path` (temp file + rename), then write the sidecar the same way."""
    try:
        ids_path.parent.mkdir(parents=True, exist_ok=True)
        n_ids = n_docs = n_unk = 0
        with atomic_writer(ids_path) as out:
            for piece_ids in iter_encoded(path, vocab, eos_mode=options["eos_mode"], encoding=options["encoding"],
                                          chunk_chars=chunk_chars):
                out.write(piece_ids.tobytes())
                n_ids += len(piece_ids)
                n_docs += int(np.count_nonzero(piece_ids == EOS))
                n_unk += int(np.count_nonzero(piece_ids == UNK))
        n_docs -= 1  # the leading <EOS> starts the stream; every document ends with one
        meta = {"options": options, "vocab": vocab.to_dict(), "counts": counts, "n_ids": n_ids,
                "n_docs": n_docs, "n_chars": n_ids - 1 - n_docs, "n_unk": n_unk, "source": str(path)}
        with atomic_writer(meta_path) as out:
            out.write(json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    except OSError as exc:
        raise CorpusError(f"cannot write the corpus cache in {ids_path.parent}: {exc.strerror or exc}; "
                          f"set CHARLM_CACHE_DIR to a writable directory") from None
    return meta


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator:
    """Binary file written under a temporary name beside `path`, fsynced and renamed into place on success.

    On any exception the temporary file is removed and `path` is left as it was.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        os.unlink(tmp_name)
        raise


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
    """Document text in pieces, each document followed by `_DOC_END`; raises CorpusError if there is none."""
    _check_eos_mode(eos_mode)
    pieces = _normalised_pieces(path, encoding, chunk_bytes)
    has_docs = False
    if eos_mode == "file":
        for text in pieces:
            has_docs = has_docs or not text.isspace()
            yield text
        if has_docs:
            yield _DOC_END
    else:
        in_paragraph = False
        for lines in _whole_lines(pieces):
            out = []
            for line in lines:
                if not line or line.isspace():
                    if in_paragraph:
                        out.append(_DOC_END)
                    in_paragraph = False
                elif eos_mode == "lines":
                    out += (line, _DOC_END)
                else:
                    out += ("\n", line) if in_paragraph else (line,)
                    in_paragraph = True
            if out:
                has_docs = True
                yield "".join(out)
        if in_paragraph:
            yield _DOC_END
    if not has_docs:
        raise CorpusError(f"{path}: corpus is empty (no text after removing the BOM and whitespace)")


def _check_eos_mode(eos_mode: str) -> None:
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
