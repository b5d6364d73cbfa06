"""Corpus reading: documents, normalisation, strict decoding errors, and the memory-mapped cache."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charlm.text.corpus as corpus_module
from charlm.errors import ConfigError, CorpusError
from charlm.text.corpus import count_chars, iter_encoded, prepare_corpus, read_text
from charlm.text.tokenizer import EOS, UNK, Vocab

CHUNK_SIZES = [1, 2, 3, 5, 64, 1 << 20]


def write(tmp_path, data: bytes, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def stream_text(corpus) -> str:
    """The id stream as text with every <EOS> shown as '|'."""
    return corpus.vocab.decode(corpus.ids, eos="|")


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize(("mode", "expected", "n_docs"), [
    ("file", "|alpha\nbeta\n\n  \ngamma delta\n\n\nomega|", 1),
    ("lines", "|alpha|beta|gamma delta|omega|", 4),
    ("paragraphs", "|alpha\nbeta|gamma delta|omega|", 3),
])
def test_document_modes(tmp_path, mode, expected, n_docs, chunk):
    path = write(tmp_path, b"alpha\nbeta\n\n  \ngamma delta\n\n\nomega")
    corpus = prepare_corpus(path, eos_mode=mode, chunk_chars=chunk)
    assert stream_text(corpus) == expected
    assert corpus.n_docs == n_docs
    assert corpus.n_chars == len(expected) - n_docs - 1
    assert len(corpus.ids) == 1 + corpus.n_chars + corpus.n_docs
    assert corpus.ids[0] == EOS and corpus.ids[-1] == EOS


@pytest.mark.parametrize("mode", ["lines", "paragraphs"])
def test_leading_and_trailing_blank_lines_make_no_empty_documents(tmp_path, mode):
    path = write(tmp_path, b"\n\n \nname one\nname two\n\n\t\n")
    corpus = prepare_corpus(path, eos_mode=mode)
    expected = {"lines": "|name one|name two|", "paragraphs": "|name one\nname two|"}[mode]
    assert stream_text(corpus) == expected


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_crlf_and_lone_cr_become_newlines_across_chunk_boundaries(tmp_path, chunk):
    path = write(tmp_path, b"a\r\nb\rc\r\n\r\nd\r\r\ne\r")
    assert read_text(path) == "a\nb\nc\n\nd\n\ne\n"
    corpus = prepare_corpus(path, chunk_chars=chunk)
    assert stream_text(corpus) == "|a\nb\nc\n\nd\n\ne\n|"
    assert "\r" not in corpus.vocab.chars


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="ab Ж🙂\r\n\t\ufeff", min_size=1, max_size=40), chunk=st.integers(1, 9),
       mode=st.sampled_from(["file", "lines", "paragraphs"]))
def test_any_chunk_size_gives_the_same_stream(tmp_path, text, chunk, mode):
    path = write(tmp_path, text.encode(), name="prop.txt")
    try:
        whole = stream_text(prepare_corpus(path, eos_mode=mode, cache_dir=tmp_path / "whole"))
    except CorpusError:
        with pytest.raises(CorpusError, match="corpus is empty"):
            prepare_corpus(path, eos_mode=mode, chunk_chars=chunk, cache_dir=tmp_path / "chunked")
        return
    chunked = stream_text(prepare_corpus(path, eos_mode=mode, chunk_chars=chunk, cache_dir=tmp_path / "chunked"))
    assert chunked == whole
    normalised = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if mode == "file":
        assert whole == f"|{normalised}|"
    else:
        assert "\r" not in whole and not whole.startswith("||")


def test_crlf_split_exactly_at_a_chunk_boundary(tmp_path):
    path = write(tmp_path, b"abc\r\ndef")  # chunk 4 ends right after the \r
    corpus = prepare_corpus(path, chunk_chars=4)
    assert stream_text(corpus) == "|abc\ndef|"


@pytest.mark.parametrize("chunk", [1, 2, 1 << 20])
def test_leading_bom_is_dropped_but_inner_one_kept(tmp_path, chunk):
    path = write(tmp_path, "\ufeffhi\ufeff".encode())
    corpus = prepare_corpus(path, chunk_chars=chunk)
    assert stream_text(corpus) == "|hi\ufeff|"
    assert read_text(path) == "hi\ufeff"


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_invalid_utf8_names_offset_line_bytes_and_encoding_hint(tmp_path, chunk):
    data = "ok\nпривет\nbad ".encode() + b"\xff\xfe" + b" rest\n"
    path = write(tmp_path, data)
    with pytest.raises(CorpusError) as caught:
        prepare_corpus(path, chunk_chars=chunk)
    message = str(caught.value)
    bad_offset = data.index(b"\xff")
    assert f"byte {bad_offset}" in message
    assert "(line 3)" in message
    assert "b'\\xff" in message
    assert "--encoding" in message
    assert "\n" not in message


def test_truncated_multibyte_sequence_at_end_of_file(tmp_path):
    path = write(tmp_path, "abc\nд".encode()[:-1])
    with pytest.raises(CorpusError, match=r"byte 4 \(line 2\)"):
        prepare_corpus(path)


def test_other_encoding_reads_what_utf8_rejects(tmp_path):
    path = write(tmp_path, "café crème".encode("latin-1"))
    with pytest.raises(CorpusError, match="utf-8"):
        prepare_corpus(path)
    assert stream_text(prepare_corpus(path, encoding="latin-1")) == "|café crème|"


def test_utf16_with_bom_is_decoded(tmp_path):
    path = write(tmp_path, "line one\r\nline two".encode("utf-16"))
    assert stream_text(prepare_corpus(path, encoding="utf-16", eos_mode="lines")) == "|line one|line two|"


def test_unknown_encoding_is_a_config_error(tmp_path):
    path = write(tmp_path, b"text")
    with pytest.raises(ConfigError, match="unknown encoding 'no-such-codec'"):
        prepare_corpus(path, encoding="no-such-codec")


@pytest.mark.parametrize("data", [b"text\x00\x01\x02more", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_binary_file_is_rejected(tmp_path, data):
    path = write(tmp_path, data)
    with pytest.raises(CorpusError, match="looks like a binary file"):
        prepare_corpus(path)


ASCII_TEXT, KANA_TEXT = "To be, or not to be, that is the question.\n" * 20, "\u3042\u3044\u3046" * 20


# Without a byte-order mark only ASCII-range UTF-16 is recognisable (NULs alternating with characters); the
# kana line has no NUL byte at all, so only its byte-order mark (read as invalid UTF-8) can give it away.
@pytest.mark.parametrize("codec, text", [("utf-16", ASCII_TEXT), ("utf-16-le", ASCII_TEXT), ("utf-16-be", ASCII_TEXT),
                                         ("utf-16", KANA_TEXT)])
def test_utf16_text_read_as_utf8_suggests_the_encoding(tmp_path, codec, text):
    path = write(tmp_path, text.encode(codec))
    with pytest.raises(CorpusError, match="looks like UTF-16 text .*pass --encoding utf-16"):
        prepare_corpus(path, cache_dir=tmp_path / "cache")
    read = prepare_corpus(path, encoding=codec, cache_dir=tmp_path / "cache")
    assert read.vocab.decode(read.ids[1:-1]) == text


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b" \n\t\r\n  ", b"\xef\xbb\xbf\n\n"])
@pytest.mark.parametrize("mode", ["file", "lines", "paragraphs"])
def test_empty_corpus_is_rejected(tmp_path, data, mode):
    path = write(tmp_path, data)
    with pytest.raises(CorpusError, match="corpus is empty"):
        prepare_corpus(path, eos_mode=mode)
    assert not list((tmp_path / "cache").rglob("*.ids")), "nothing is cached for an empty corpus"


def test_missing_file_and_directory_are_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        prepare_corpus(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        prepare_corpus(tmp_path)


def test_unknown_document_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="document mode"):
        prepare_corpus(write(tmp_path, b"x"), eos_mode="sentences")


def test_ids_are_a_read_only_memmap_of_the_smallest_dtype(tmp_path):
    corpus = prepare_corpus(write(tmp_path, "abc🙂".encode()))
    assert isinstance(corpus.ids, np.memmap)
    assert corpus.ids.dtype == np.uint8
    with pytest.raises(ValueError):
        corpus.ids[0] = 3


def test_cache_is_under_charlm_cache_dir_with_a_json_sidecar(tmp_path):
    corpus = prepare_corpus(write(tmp_path, b"hello world"))
    assert corpus.cache_path.parent == tmp_path / "cache" / "corpus"
    meta = json.loads(corpus.cache_path.with_suffix(".json").read_text())
    assert meta["options"]["sha256"] == corpus.sha256
    assert meta["counts"] == {"h": 1, "e": 1, "l": 3, "o": 2, " ": 1, "w": 1, "r": 1, "d": 1}
    assert meta["n_docs"] == 1
    assert not list(corpus.cache_path.parent.glob("*.tmp"))


def test_second_prepare_reuses_the_cache_without_encoding(tmp_path, monkeypatch):
    path = write(tmp_path, "some text, some more: ЖЖ\n".encode() * 50)
    first = prepare_corpus(path)
    stat = first.cache_path.stat()

    def fail(*args, **kwargs):
        raise AssertionError("the corpus was encoded again")

    monkeypatch.setattr(corpus_module, "_write_cache_entry", fail)
    monkeypatch.setattr(corpus_module, "count_chars", fail)
    second = prepare_corpus(path)
    assert second.cache_path == first.cache_path
    assert (second.cache_path.stat().st_ino, second.cache_path.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert np.array_equal(second.ids, first.ids)
    assert second.vocab == first.vocab and second.n_chars == first.n_chars


def test_changed_file_gets_a_new_cache_entry(tmp_path):
    path = write(tmp_path, b"first version")
    first = prepare_corpus(path)
    path.write_bytes(b"second version!")
    second = prepare_corpus(path)
    assert second.sha256 != first.sha256
    assert second.cache_path != first.cache_path
    assert stream_text(second) == "|second version!|"


@pytest.mark.parametrize("options", [{"eos_mode": "lines"}, {"min_count": 2}, {"max_vocab": 1},
                                     {"encoding": "latin-1"}])
def test_options_that_change_the_ids_change_the_key(tmp_path, options):
    path = write(tmp_path, b"aab\nab\n")
    assert prepare_corpus(path, **options).cache_path != prepare_corpus(path).cache_path


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    path = write(tmp_path, b"abcdef" * 10)
    first = prepare_corpus(path)
    expected = np.array(first.ids)
    first.cache_path.write_bytes(b"\x00" * 5)
    again = prepare_corpus(path)
    assert np.array_equal(again.ids, expected)


def test_given_vocabulary_is_used_and_unknowns_counted(tmp_path):
    vocab = Vocab.build({"a": 1, "b": 1})
    corpus = prepare_corpus(write(tmp_path, b"abcab\ncc"), vocab=vocab, eos_mode="lines")
    assert corpus.vocab == vocab
    assert corpus.ids.tolist() == [EOS, 2, 3, UNK, 2, 3, EOS, UNK, UNK, EOS]
    assert corpus.n_unk == 3
    assert corpus.counts is None


def test_min_count_folds_into_unk_in_the_stream(tmp_path):
    corpus = prepare_corpus(write(tmp_path, b"aaab"), min_count=2)
    assert corpus.vocab.chars == ("a",)
    assert corpus.ids.tolist() == [EOS, 2, 2, 2, UNK, EOS]
    assert corpus.n_unk == 1


@pytest.mark.parametrize("mode", ["file", "lines", "paragraphs"])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_iter_encoded_matches_prepared_ids(tmp_path, mode, chunk):
    text = "Привет мир\r\n\r\nsecond 🙂 para\nline\n\n\nlast"
    path = write(tmp_path, text.encode())
    corpus = prepare_corpus(path, eos_mode=mode)
    pieces = list(iter_encoded(path, corpus.vocab, eos_mode=mode, chunk_chars=chunk))
    assert all(p.dtype == corpus.vocab.id_dtype for p in pieces)
    assert np.concatenate(pieces).tolist() == corpus.ids.tolist()


def test_count_chars_counts_document_characters(tmp_path):
    stats = count_chars(write(tmp_path, "ab\n\nbЖ\n".encode()), eos_mode="lines", chunk_chars=2)
    assert stats.counts == {"a": 1, "b": 2, "Ж": 1}
    assert (stats.n_docs, stats.n_chars) == (2, 4)


def test_large_file_streams_in_small_chunks_identically(tmp_path):
    rng = np.random.default_rng(1)
    text = "".join(rng.choice(list("abc \n\r中🙂"), size=50_000))
    path = write(tmp_path, text.encode())
    small = prepare_corpus(path, eos_mode="paragraphs", chunk_chars=999, cache_dir=tmp_path / "small")
    large = prepare_corpus(path, eos_mode="paragraphs", cache_dir=tmp_path / "large")
    assert np.array_equal(small.ids, large.ids)


def test_unwritable_cache_dir_is_a_corpus_error(tmp_path):
    blocker = write(tmp_path, b"not a directory", name="blocker")
    with pytest.raises(CorpusError, match="CHARLM_CACHE_DIR"):
        prepare_corpus(write(tmp_path, b"text"), cache_dir=blocker)
    assert os.path.isfile(blocker)


def test_cache_prunes_least_recently_used_entries_but_never_the_new_one(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    texts = {name: (name * 2000) for name in ("a", "b", "c")}
    paths = {}
    for i, (name, text) in enumerate(texts.items()):
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text(text, encoding="utf-8")
        prepare_corpus(paths[name], cache_dir=cache)
        for sidecar in (cache / "corpus").glob("*.json"):  # order the uses: a, then b, then c
            if json.loads(sidecar.read_text())["source"] == str(paths[name]):
                os.utime(sidecar, (1_000_000 + i, 1_000_000 + i))
    prepare_corpus(paths["a"], cache_dir=cache)  # a cache hit marks a as the most recently used
    entry_size = sum(p.stat().st_size for p in (cache / "corpus").iterdir()) // 3
    monkeypatch.setattr(corpus_module, "CACHE_MAX_BYTES", int(3.5 * entry_size))
    (tmp_path / "d.txt").write_text("d" * 2000, encoding="utf-8")
    prepare_corpus(tmp_path / "d.txt", cache_dir=cache)  # adding d must evict b (oldest use), keep a, c, d
    sources = sorted(json.loads(p.read_text())["source"] for p in (cache / "corpus").glob("*.json"))
    assert sources == sorted(str(tmp_path / f"{n}.txt") for n in ("a", "c", "d"))
    assert len(list((cache / "corpus").glob("*.ids"))) == 3
    # An orphan id file (a crash between the id file and its sidecar) is pruned like any entry.
    entries_bytes = sum(p.stat().st_size for p in (cache / "corpus").iterdir())
    orphan = cache / "corpus" / ("0" * 64 + ".ids")
    orphan.write_bytes(b"\0" * 10)
    os.utime(orphan, (1_000_000, 1_000_000))
    assert corpus_module.prune_cache(cache / "corpus", entries_bytes) == ["0" * 64] and not orphan.exists()
    # The entry named `keep` stays even when it alone is over the limit.
    kept = prepare_corpus(tmp_path / "d.txt", cache_dir=cache).cache_path.stem
    assert len(corpus_module.prune_cache(cache / "corpus", 0, keep=kept)) == 2
    assert sorted(p.name for p in (cache / "corpus").iterdir()) == [f"{kept}.ids", f"{kept}.json"]
