"""The memory-mapped id cache: a corpus file is encoded once, then every run maps the cached ids.

`prepare_corpus` caches the ids of a file in `<cache dir>/corpus/<key>.ids` (raw `vocab.id_dtype`) with a
JSON sidecar `<key>.json`; the key hashes the file's bytes and every option that changes the ids (the
token kind and case rule included). Both
files are written atomically, the id file first, so a sidecar always describes a complete id file. The
cache is pruned, least recently used first, to `CACHE_MAX_BYTES` whenever an entry is added.
"""

import contextlib
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.atomic import atomic_open, write_atomic
from charlm.errors import CorpusError
from charlm.text.corpus import (
    CHUNK_BYTES,
    check_eos_mode,
    check_tokens,
    codec_name,
    count_tokens,
    file_sha256,
    iter_encoded_pieces,
)
from charlm.text.symbols import SymbolVocab, count_symbol_tokens
from charlm.text.tokenizer import EOS, UNK, Vocab, tokenizer_from_dict
from charlm.text.units import DEFAULT_MAX_VOCAB
from charlm.text.vocab import DOC_END
from charlm.text.words import WordVocab, count_word_tokens

CACHE_FORMAT = 1
# Entries are pruned least recently used first once the cache holds more than this (the entry just written
# always stays, however large).
CACHE_MAX_BYTES = 4 << 30


@dataclass(frozen=True, eq=False)  # equality over a memmap would be elementwise and ambiguous
class Corpus:
    """A prepared corpus.

    - ids: memory-mapped id stream `<EOS> doc1 <EOS> ... docN <EOS>`, dtype `vocab.id_dtype` (for characters
      of shape (1 + n_chars + n_docs,))
    - vocab: a char `Vocab`, a `WordVocab` or a `SymbolVocab`
    - counts: the token counts the vocabulary was built from, or None when `vocab=` was given
    - n_docs: the `<EOS>` ids after the first: the documents (for symbols, whose every line ends with `<EOS>`,
      the lines)
    - n_chars: characters of the documents (document ends not included; for symbols, line ends neither), so
      n_chars + n_docs are the characters of the documents plus one per document end
    - n_unk: how many ids are `<UNK>` (tokens folded by min_count/max_vocab or unknown to a given vocab)
    - unk_chars: characters of the text that became `<UNK>` (= n_unk for characters)
    """

    ids: np.ndarray
    vocab: Vocab | WordVocab | SymbolVocab
    eos_mode: str
    encoding: str
    sha256: str
    n_docs: int
    n_chars: int
    n_unk: int
    unk_chars: int
    path: Path
    counts: dict | None
    cache_path: Path


def default_cache_dir() -> Path:
    """`$CHARLM_CACHE_DIR`, else `~/.cache/charlm`."""
    return Path(os.environ.get("CHARLM_CACHE_DIR") or Path.home() / ".cache" / "charlm")


def prepare_corpus(path, *, tokens: str = "char", lowercase: bool = False, eos_mode: str = "file",
                   encoding: str = "utf-8", min_count: int = 1, max_vocab: int | None = None,
                   vocab: Vocab | WordVocab | SymbolVocab | None = None, cache_dir=None,
                   chunk_chars: int = CHUNK_BYTES) -> Corpus:
    """Encode a corpus file into a cached, memory-mapped id stream; a cached file is mapped, never re-encoded.

    - tokens: "char", "word" or "symbols" (KINDS); lowercase: lowercase every word token or symbol
    - max_vocab: tokens kept; None keeps every character, or the DEFAULT_MAX_VOCAB most frequent words or
      symbols
    - vocab: use this vocabulary (fine-tuning, scoring) instead of building one from the file's counts; its
      kind and case rule then replace `tokens` and `lowercase`
    - cache_dir: defaults to `default_cache_dir()`
    - chunk_chars: bytes read per step (bounds memory; tests use tiny chunks)
    Raises CorpusError for unreadable, undecodable, binary or empty files; ConfigError for unknown options.
    """
    path = Path(path)
    check_eos_mode(eos_mode)
    if vocab is not None:
        tokens, lowercase = vocab.kind, vocab.lowercase
    check_tokens(tokens, lowercase)
    max_vocab = _vocab_cap(tokens, max_vocab)
    sha256 = file_sha256(path)
    options = {"format": CACHE_FORMAT, "sha256": sha256, "tokens": tokens, "lowercase": lowercase,
               "eos_mode": eos_mode, "encoding": codec_name(encoding), "min_count": min_count,
               "max_vocab": max_vocab, "vocab": vocab.to_dict() if vocab else None}
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
    entry_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry_dir = entry_dir / "corpus"
    ids_path, meta_path = entry_dir / f"{key}.ids", entry_dir / f"{key}.json"

    meta = _load_cache_entry(ids_path, meta_path, options)
    if meta is None:
        counts = None
        if vocab is None:
            counts = count_tokens(path, tokens=tokens, eos_mode=eos_mode, encoding=encoding, lowercase=lowercase,
                                  chunk_chars=chunk_chars).counts
            vocab = _build_vocab(tokens, counts, min_count=min_count, max_vocab=max_vocab, lowercase=lowercase)
        meta = _write_cache_entry(path, ids_path, meta_path, options, vocab, counts, chunk_chars)
        prune_cache(entry_dir, CACHE_MAX_BYTES, keep=key)
    else:
        with contextlib.suppress(OSError):  # the sidecar's mtime is the entry's last use (LRU pruning)
            os.utime(meta_path)
    built_vocab = tokenizer_from_dict(meta["vocab"])
    ids = np.memmap(ids_path, dtype=built_vocab.id_dtype, mode="r", shape=(meta["n_ids"],))
    return Corpus(ids=ids, vocab=built_vocab, eos_mode=eos_mode, encoding=encoding, sha256=sha256,
                  n_docs=meta["n_docs"], n_chars=meta["n_chars"], n_unk=meta["n_unk"],
                  unk_chars=meta["unk_chars"], path=path,
                  counts=meta["counts"], cache_path=ids_path)


def texts_vocab(tokens: str, texts: list[str], *, min_count: int = 1, max_vocab: int | None = None,
                lowercase: bool = False) -> Vocab | WordVocab | SymbolVocab:
    """The vocabulary of kind `tokens` of texts held in memory, each text one document (a labelled line, one
    side of a pair). `max_vocab` None keeps every character, or the DEFAULT_MAX_VOCAB most frequent words or
    symbols, as `prepare_corpus`."""
    check_tokens(tokens, lowercase)
    if tokens == "char":
        counts = Counter(c for t in texts for c in t)
    else:
        count = count_word_tokens if tokens == "word" else count_symbol_tokens
        counts = count(["".join(t + DOC_END for t in texts)], lowercase=lowercase)[0]
    return _build_vocab(tokens, counts, min_count=min_count, max_vocab=_vocab_cap(tokens, max_vocab),
                        lowercase=lowercase)


def _vocab_cap(tokens: str, max_vocab: int | None) -> int | None:
    """--max-vocab, or when unset: every character, the DEFAULT_MAX_VOCAB most frequent words or symbols."""
    return DEFAULT_MAX_VOCAB if tokens != "char" and max_vocab is None else max_vocab


def _build_vocab(tokens: str, counts: dict, *, min_count: int, max_vocab: int | None, lowercase: bool
                 ) -> Vocab | WordVocab | SymbolVocab:
    """The vocabulary of kind `tokens` built from a corpus's token counts."""
    if tokens == "char":
        return Vocab.build(counts, min_count=min_count, max_vocab=max_vocab)
    kind = WordVocab if tokens == "word" else SymbolVocab
    return kind.build(counts, min_count=min_count, max_vocab=max_vocab, lowercase=lowercase)


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
        vocab = tokenizer_from_dict(meta["vocab"])
        complete = meta["options"] == options and ids_path.stat().st_size == meta["n_ids"] * vocab.id_dtype.itemsize
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if complete else None


def _write_cache_entry(path: Path, ids_path: Path, meta_path: Path, options: dict,
                       vocab: Vocab | WordVocab | SymbolVocab, counts: dict | None, chunk_chars: int) -> dict:
    """Encode the file into `ids_path` (temp file + rename), then write the sidecar the same way."""
    try:
        ids_path.parent.mkdir(parents=True, exist_ok=True)
        n_ids = n_docs = n_unk = n_chars = unk_chars = 0
        with atomic_open(ids_path) as out:
            for piece in iter_encoded_pieces(path, vocab, eos_mode=options["eos_mode"],
                                             encoding=options["encoding"], chunk_chars=chunk_chars):
                out.write(piece.ids.tobytes())
                n_ids += len(piece.ids)
                n_docs += int(np.count_nonzero(piece.ids == EOS))
                n_unk += int(np.count_nonzero(piece.ids == UNK))
                n_chars += piece.n_chars
                unk_chars += piece.unk_chars
        n_docs -= 1  # the leading <EOS> starts the stream; every document ends with one
        meta = {"options": options, "vocab": vocab.to_dict(), "counts": counts, "n_ids": n_ids,
                "n_docs": n_docs, "n_chars": n_chars, "n_unk": n_unk, "unk_chars": unk_chars,
                "source": str(path)}
        write_atomic(meta_path, json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    except OSError as exc:
        raise CorpusError(f"cannot write the corpus cache in {ids_path.parent}: {exc.strerror or exc}; "
                          f"set CHARLM_CACHE_DIR to a writable directory") from None
    return meta
