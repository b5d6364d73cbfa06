"""Symbol vocabulary (`--tokens symbols`): whitespace-separated units kept whole and one `<EOS>` per line; round
trips, streaming equal to reading whole, id order, `<unk>`, the validated JSON form, character counts, the
corpus cache, and a real `charlm train` / `charlm perplexity` run."""

import json

import numpy as np
import pytest
from helpers import invoke, run_charlm
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.store.checkpoint import load_checkpoint
from charlm.text.cache import prepare_corpus
from charlm.text.corpus import count_tokens, iter_encoded
from charlm.text.symbols import SymbolVocab, count_symbol_tokens
from charlm.text.tokenizer import DOC_END, EOS, UNK, tokenizer_from_dict
from charlm.training.options import TrainOptions
from charlm.training.recipe import apply_recipe
from charlm.training.recipe_rules import WORD_RECIPE, CorpusStats

ALPHABET = "KAE1Tæ中\u0301<>unk \t\n"
PHONEMES = "K AE1 T\nD AO1 G\n\nK AE1 T S\n"


def full_vocab(*texts, lowercase=False):
    """A vocabulary holding every symbol of the texts."""
    counts = count_symbol_tokens([t + DOC_END for t in texts], lowercase=lowercase)[0]
    return SymbolVocab.build(counts, max_vocab=None, lowercase=lowercase)


def canonical(text: str) -> str:
    """`text` as a symbol vocabulary writes it back: each line's whitespace runs one space, none at its ends."""
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


def encode_pieces(vocab, pieces) -> tuple[list[int], int, int]:
    """(ids, characters, `<UNK>` characters) of `vocab.iter_encode(pieces)`, concatenated and summed."""
    ids, n_chars, unk_chars = [], 0, 0
    for piece_ids, chars, unk in vocab.iter_encode(pieces):
        assert piece_ids.dtype == vocab.id_dtype
        ids += piece_ids.tolist()
        n_chars += chars
        unk_chars += unk
    return ids, n_chars, unk_chars


def test_symbols_are_whitespace_separated_and_every_line_ends_with_eos():
    vocab = full_vocab(PHONEMES)
    assert vocab.kind == "symbols" and vocab.lowercase is False
    assert vocab.tokenize("K  AE1\tT\n") == ["K", "AE1", "T", "\n"]
    assert vocab.tokenize(" é,  don't \n") == ["é,", "don't", "\n"]  # punctuation stays inside its symbol
    ids = vocab.encode("K AE1 T\nD AO1 G")
    assert ids.tolist() == [int(vocab.encode(s)[0]) for s in ("K", "AE1", "T")] + [EOS] + [
        int(vocab.encode(s)[0]) for s in ("D", "AO1", "G")]
    assert vocab.decode(ids) == "K AE1 T\nD AO1 G"
    assert vocab.decode(vocab.encode("  K   AE1 T  \n\n T\n")) == "K AE1 T\n\nT\n"


def test_a_document_end_right_after_a_line_end_adds_no_eos():
    vocab = full_vocab("a b")
    a, b = (int(vocab.encode(s)[0]) for s in "ab")
    assert encode_pieces(vocab, ["a\nb" + DOC_END])[0] == [a, EOS, b, EOS]
    assert encode_pieces(vocab, ["a\nb\n" + DOC_END])[0] == [a, EOS, b, EOS]  # the last line's end is the doc's
    assert encode_pieces(vocab, ["a\nb\n\n" + DOC_END])[0] == [a, EOS, b, EOS, EOS]  # a blank line counts
    assert encode_pieces(vocab, ["a\n  " + DOC_END])[0] == [a, EOS, EOS]  # a last line of spaces is a line
    assert encode_pieces(vocab, ["a" + DOC_END + "b" + DOC_END])[0] == [a, EOS, b, EOS]  # --eos lines


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=ALPHABET, max_size=60))
def test_any_text_round_trips_to_its_canonical_spacing(text):
    vocab = full_vocab(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == canonical(text)
    assert len(ids) == len(vocab.tokenize(text))
    assert UNK not in ids.tolist() or "<unk>" in text


@settings(max_examples=150, deadline=None)
@given(docs=st.lists(st.text(alphabet=ALPHABET, max_size=30), min_size=1, max_size=4), data=st.data())
def test_streamed_encoding_equals_the_whole_text_encoded(docs, data):
    text = "".join(doc + DOC_END for doc in docs)
    vocab = SymbolVocab.build(count_symbol_tokens([text])[0], max_vocab=4, lowercase=data.draw(st.booleans()))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    whole = encode_pieces(vocab, [text])
    assert encode_pieces(vocab, pieces) == whole
    assert count_symbol_tokens(pieces) == count_symbol_tokens([text])
    ids, n_chars, _ = whole
    # the characters plus one per <EOS> are the documents' characters plus one per document end
    assert n_chars + ids.count(EOS) == len(text)


def test_ids_follow_counts_then_the_symbol_and_unk_is_never_kept():
    counts = {"b": 3, "a": 3, "c": 5, "d": 1, "<unk>": 9}
    vocab = SymbolVocab.build(counts, max_vocab=3)
    assert vocab.tokens == ("c", "a", "b") and vocab.size == 5
    assert vocab.encode("c a b d").tolist() == [2, 3, 4, UNK]
    assert SymbolVocab.build(counts, min_count=3, max_vocab=None).tokens == ("c", "a", "b")
    assert SymbolVocab.build(dict(reversed(list(counts.items())))) == SymbolVocab.build(counts)
    many = SymbolVocab.build({f"s{i}": 1 + i % 7 for i in range(10_050)})
    assert len(many.tokens) == 10_000 and many.id_dtype == np.uint16
    with pytest.raises(ValueError, match="min_count"):
        SymbolVocab.build(counts, min_count=0)
    with pytest.raises(ValueError, match="max_vocab"):
        SymbolVocab.build(counts, max_vocab=0)


def test_a_literal_unk_is_the_unk_id_and_unknown_symbols_are_listed():
    vocab = full_vocab("the <unk> cat")
    assert "<unk>" not in vocab.tokens and "<unk>" not in vocab and "the" in vocab and "\n" not in vocab
    the, cat = (int(vocab.encode(s)[0]) for s in ("the", "cat"))
    assert vocab.encode("the <unk> dog cat").tolist() == [the, UNK, UNK, cat]
    assert vocab.decode([the, UNK, cat], unk="?") == "the ? cat"
    assert vocab.unknown("<unk> dog the dog bird") == ["dog", "bird"]
    ids, n_chars, unk_chars = encode_pieces(vocab, ["the <unk> dog" + DOC_END])
    assert ids == [the, UNK, UNK, EOS] and (n_chars, unk_chars) == (len("the <unk> dog"), len("<unk>dog"))
    assert vocab.token_text(EOS) == "<EOS>" and vocab.token_text(UNK) == "<UNK>" and vocab.token_text(the) == "the"


def test_lowercase_vocabulary_lowercases_every_symbol():
    counts = count_symbol_tokens(["Hello HELLO hello World" + DOC_END], lowercase=True)[0]
    assert counts == {"hello": 3, "world": 1}
    vocab = SymbolVocab.build(counts, lowercase=True)
    assert vocab.encode("HeLLo WORLD").tolist() == vocab.encode("hello world").tolist()
    assert vocab.decode(vocab.encode("Hello  World")) == "hello world"
    assert vocab.unknown("Hello Mars") == ["mars"]
    assert vocab != SymbolVocab(vocab.tokens)


def test_dict_form_round_trips_and_a_bad_dict_is_refused():
    vocab = full_vocab(PHONEMES, lowercase=True)
    d = json.loads(json.dumps(vocab.to_dict()))
    assert d["kind"] == "symbols" and d["specials"] == ["<EOS>", "<UNK>"]
    assert tokenizer_from_dict(d) == vocab == SymbolVocab.from_dict(d)
    assert hash(tokenizer_from_dict(d)) == hash(vocab) and "SymbolVocab(size=" in repr(vocab)
    bad = [
        ({**d, "kind": "word"}, "kind 'symbols'"),
        ({k: v for k, v in d.items() if k != "lowercase"}, "keys"),
        ({**d, "specials": ["<UNK>", "<EOS>"]}, "specials"),
        ({**d, "lowercase": "yes"}, "true or false"),
        ({**d, "tokens": "K AE1"}, "must be a list"),
        ({**d, "tokens": ["K", "AE 1"]}, "not a symbol"),
        ({**d, "tokens": ["K", ""]}, "not a symbol"),
        ({**d, "tokens": ["K", "<unk>"]}, "not a symbol"),
        ({**d, "tokens": ["K", 3]}, "not a symbol"),
        ({**d, "tokens": ["K", "T", "K"]}, "more than once"),
    ]
    for bad_dict, message in bad:
        with pytest.raises(ValueError, match=message):
            SymbolVocab.from_dict(bad_dict)
    with pytest.raises(ValueError, match="kind 'symbols'"):
        SymbolVocab.from_dict(["symbols"])
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        tokenizer_from_dict({**d, "kind": "phonemes"})


def test_char_count_counts_the_spaces_between_symbols_and_one_per_line_end():
    text = "K AE1 T\nD AO1 G\n"
    vocab = full_vocab(text)
    ids = np.concatenate(([EOS], vocab.encode(text)))
    assert vocab.char_count(ids) == len(text)  # exact for single-spaced text
    assert vocab.char_count(ids[:1]) == 0.0
    unk_ids = [EOS, int(vocab.encode("K")[0]), UNK, EOS]
    assert vocab.char_count(unk_ids, unk_length=3.5) == 1 + 1 + 3.5 + 1  # K, a space, <UNK>, the line end
    with pytest.raises(ValueError, match="ids must lie in"):
        vocab.char_count([EOS, vocab.size])


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=ALPHABET, max_size=50), data=st.data())
def test_streamed_decoder_pieces_concatenate_to_the_whole_decoding(text, data):
    vocab = full_vocab(text, "zz")
    ids = np.concatenate(([EOS], vocab.encode(text), [EOS], vocab.encode("zz " + text)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(ids)), max_size=5)))
    decoder = vocab.decoder()
    pieces = [decoder.feed(ids[a:b]) for a, b in zip([0, *cuts], [*cuts, len(ids)], strict=True)]
    assert "".join(pieces) == vocab.decode(ids)
    split = data.draw(st.integers(0, len(ids)))
    assert vocab.decode(ids[:split]) + vocab.decoder(context=ids[:split]).feed(ids[split:]) == vocab.decode(ids)


def test_a_prepared_symbol_corpus_reads_the_same_in_chunks_and_counts_lines(tmp_path):
    path = tmp_path / "phonemes.txt"
    path.write_text(PHONEMES, encoding="utf-8")
    whole = prepare_corpus(path, tokens="symbols", cache_dir=tmp_path / "a")
    chunked = prepare_corpus(path, tokens="symbols", cache_dir=tmp_path / "b", chunk_chars=3)
    assert whole.vocab.kind == "symbols" and whole.vocab == chunked.vocab
    assert whole.ids.tolist() == chunked.ids.tolist() == iter_encoded_ids(path, whole.vocab)
    assert whole.vocab.decode(whole.ids[1:]) == PHONEMES
    assert whole.n_docs == 4  # --eos file: every line, the blank one included
    assert whole.n_chars + whole.n_docs == len(PHONEMES) + 1  # the file's characters and its document end
    lines = prepare_corpus(path, tokens="symbols", eos_mode="lines", lowercase=True)
    assert lines.n_docs == 3 and lines.vocab.lowercase and "k" in lines.vocab
    stats = count_tokens(path, tokens="symbols")
    assert (stats.n_docs, stats.n_chars, stats.n_tokens) == (1, len(PHONEMES), 10 + 3)


def iter_encoded_ids(path, vocab) -> list[int]:
    return np.concatenate(list(iter_encoded(path, vocab, chunk_chars=5))).tolist()


def test_symbol_models_take_the_word_recipe_with_an_embedding():
    stats = CorpusStats(tokens=50_000, documents=1_000, vocab=300, kind="symbols")
    opts, recipe = apply_recipe(TrainOptions(corpus="x", tokens="symbols", steps=10), stats)
    assert recipe.summary == "recipe: the word-level recipe"
    assert (opts.hidden, opts.lr, opts.optimizer) == (WORD_RECIPE["hidden"], WORD_RECIPE["lr"], "sgd")
    assert opts.embed == opts.hidden


def test_vocab_command_shows_symbols(tmp_path):
    path = tmp_path / "phonemes.txt"
    path.write_text(PHONEMES, encoding="utf-8")
    shown = json.loads(invoke("vocab", path, "--tokens", "symbols", "--json", "-q").stdout)
    assert shown["kind"] == "symbols" and shown["vocab"]["kind"] == "symbols"
    assert [t["token"] for t in shown["tokens"]][:3] == ["AE1", "K", "T"]
    result = invoke("vocab", path, "--tokens", "symbols", "--eos", "lines")
    assert result.exit_code == 0 and "tokens in 3 line(s)" in result.stdout, result.output


def test_train_and_perplexity_name_the_tokenization(tmp_path):
    rng = np.random.default_rng(0)
    words = ["K", "AE1", "T", "D", "AO1", "G", "S", "<unk>"]
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 8))) for _ in range(120)]
    corpus = tmp_path / "phonemes.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    trained = run_charlm("train", corpus, "--out", run, "--tokens", "symbols", "--eos", "lines", "--steps", "5",
                         "--hidden", "16", "--layers", "1", "--batch", "4", "--seq-len", "8", "--quiet")
    assert trained.returncode == 0, trained.stderr
    ckpt = load_checkpoint(run)
    assert ckpt.vocab.kind == "symbols" and ckpt.config.embed == 16
    scored = run_charlm("perplexity", run, corpus, "--json", "--quiet")
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["tokens"] == "symbols"
    assert report["tokenization"] == "whitespace-separated symbols plus one end per line (blank lines skipped)"
    total = report["total"]
    n_symbols = sum(len(line.split()) for line in lines)
    assert total["tokens"] == n_symbols + len(lines)  # every symbol and one end per line
    assert total["chars"] == len("\n".join(lines) + "\n")
    assert total["bits_per_char"] > 0 and total["perplexity"] > 1
    described = json.loads(run_charlm("info", run, "--json", "--quiet").stdout)
    assert described["vocab"]["kind"] == "symbols" and "AE1" in described["vocab"]["tokens"]
