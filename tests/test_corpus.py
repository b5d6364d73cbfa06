"""Corpus reading: documents, normalisation and strict decoding errors (the cache: test_cache.py)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.errors import ConfigError, CorpusError
from charlm.text.cache import prepare_corpus
from charlm.text.corpus import count_chars, count_tokens, iter_encoded, read_text, split_documents
from charlm.text.tokenizer import DOC_END, EOS, UNK, Vocab
from charlm.text.words import WordVocab, count_word_tokens

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


def _stream_documents(corpus) -> list[str]:
    """The documents of a prepared corpus: the text between consecutive <EOS> ids."""
    ids = np.asarray(corpus.ids)
    ends = np.flatnonzero(ids == EOS)
    return [corpus.vocab.decode(ids[a + 1:b]) for a, b in zip(ends[:-1], ends[1:], strict=True)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="ab \u3000\r\n\t\x0b\ufeff", max_size=30), mode=st.sampled_from(["file", "lines",
                                                                                                   "paragraphs"]))
def test_split_documents_gives_the_documents_of_the_streamed_file(tmp_path, text, mode):
    path = write(tmp_path, text.encode(), name="split.txt")
    try:
        streamed = _stream_documents(prepare_corpus(path, eos_mode=mode, chunk_chars=3, cache_dir=tmp_path / "c"))
    except CorpusError:
        streamed = []
    assert split_documents(read_text(path), mode) == streamed


@pytest.mark.parametrize(("mode", "expected"), [
    ("file", ["\n alpha\nbeta\n\n  \ngamma\n"]),
    ("lines", [" alpha", "beta", "gamma"]),
    ("paragraphs", [" alpha\nbeta", "gamma"]),
])
def test_split_documents_modes(mode, expected):
    assert split_documents("\n alpha\nbeta\n\n  \ngamma\n", mode) == expected
    assert split_documents(" \n\t\n", mode) == [] and split_documents("", mode) == []


def test_split_documents_refuses_unknown_modes_and_the_marker_character():
    with pytest.raises(ConfigError, match="document mode"):
        split_documents("x", "sentences")
    with pytest.raises(ValueError, match="U\\+D800"):
        split_documents("a\ud800b", "lines")


WORD_TEXT = "The cat\u2019s  <unk> sat.\r\n\r\nΓειά σου, κόσμε!\n\tπρώτο 中文 e\u0301tude\nlast line  \n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="ab Жς.,<unk>\r\n\t\u0301", min_size=1, max_size=40), chunk=st.integers(1, 9),
       mode=st.sampled_from(["file", "lines", "paragraphs"]), cap=st.sampled_from([None, 2]))
def test_word_ids_of_a_file_read_in_tiny_chunks_equal_the_whole_text_encoded(tmp_path, text, chunk, mode, cap):
    path = write(tmp_path, text.encode(), name="prop.txt")
    try:
        counts = count_tokens(path, tokens="word", eos_mode=mode)
    except CorpusError:
        return  # an empty corpus: refused alike in both modes (test_any_chunk_size_gives_the_same_stream)
    assert count_tokens(path, tokens="word", eos_mode=mode, chunk_chars=chunk) == counts
    vocab = WordVocab.build(counts.counts, max_vocab=cap)
    chunked = np.concatenate(list(iter_encoded(path, vocab, eos_mode=mode, chunk_chars=chunk))).tolist()
    expected = [EOS]
    for doc in split_documents(read_text(path), mode):
        expected += [*vocab.encode(doc).tolist(), EOS]
    assert chunked == expected


@pytest.mark.parametrize("mode", ["file", "lines", "paragraphs"])
def test_word_counts_match_the_character_counts_and_the_string_splitter(tmp_path, mode):
    path = write(tmp_path, WORD_TEXT.encode())
    words = count_tokens(path, tokens="word", eos_mode=mode, chunk_chars=3)
    chars = count_chars(path, eos_mode=mode)
    assert (words.n_docs, words.n_chars) == (chars.n_docs, chars.n_chars)
    docs = split_documents(read_text(path), mode)
    assert words.counts == count_word_tokens([d + DOC_END for d in docs])[0]
    assert words.n_tokens == sum(words.counts.values())
    assert count_tokens(path, eos_mode=mode).counts == chars.counts


def test_word_vocabulary_from_a_prepared_file_round_trips_its_documents(tmp_path):
    path = write(tmp_path, WORD_TEXT.encode())
    corpus = prepare_corpus(path, tokens="word", eos_mode="paragraphs", chunk_chars=5)
    assert corpus.vocab.kind == "word" and corpus.n_unk == 1 and corpus.unk_chars == len("<unk>")
    docs = split_documents(read_text(path), "paragraphs")
    assert corpus.vocab.decode(corpus.ids, eos="|") == "|" + "".join(d + "|" for d in docs)
    assert corpus.n_chars == sum(map(len, docs)) and corpus.n_docs == len(docs)
    assert corpus.vocab.char_count(corpus.ids, unk_length=5) == corpus.n_chars + corpus.n_docs


def test_a_given_word_vocabulary_counts_unknown_text(tmp_path):
    vocab = WordVocab.build({"the": 2, "cat": 1, "\n": 1})
    corpus = prepare_corpus(write(tmp_path, b"the dog\nthe cat sat!"), vocab=vocab)
    assert corpus.vocab == vocab and corpus.counts is None
    assert corpus.ids.tolist() == [EOS, 2, UNK, 3, 2, 4, UNK, UNK, EOS]  # ties by code point: "\n" < "cat"
    assert (corpus.n_unk, corpus.unk_chars, corpus.n_chars) == (3, len("dogsat!"), 20)


def test_token_kind_and_lowercasing_are_checked(tmp_path):
    path = write(tmp_path, b"Some Words")
    with pytest.raises(ConfigError, match="unknown token kind 'bpe'"):
        count_tokens(path, tokens="bpe")
    with pytest.raises(ConfigError, match="word tokens and symbols only"):
        prepare_corpus(path, lowercase=True)
    assert prepare_corpus(path, tokens="word", lowercase=True).vocab.tokens == ("some", "words")
