"""Word vocabulary: token classes and separators, exact round trips, <unk>, caps and ties, lowercasing,
streamed decoding and encoding, character counts and the validated JSON form."""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.text.tokenizer import DOC_END, EOS, UNK, tokenizer_from_dict
from charlm.text.words import JOIN, WordVocab, count_word_tokens, iter_segments, segment

MIXED = ("  Crème brûlée, naïve café!\tΓειά σου, κόσμε. Привет,  мир\n\n中文字符 ٣٤ 42.5 🙂🚀 e\u0301tude "
         "हिन्दी x_y (a) «b» don't \n ")
ALPHABET = "aéΩжЖ中文9٣ \t\n.,!_🙂\u0301<>'unk"


def full_vocab(*texts, lowercase=False, **kwargs):
    """A vocabulary holding every token of the texts."""
    counts = count_word_tokens([t + DOC_END for t in texts], lowercase=lowercase)[0]
    return WordVocab.build(counts, max_vocab=None, lowercase=lowercase, **kwargs)


def test_tokens_are_words_punctuation_and_the_separators_that_differ_from_the_default():
    vocab = full_vocab("x")
    assert vocab.tokenize("Hello, world!\n") == ["Hello", ",", "world", "!", "\n"]
    assert vocab.tokenize("a  b") == ["a", "  ", "b"]
    assert vocab.tokenize("a.b") == ["a", ".", JOIN, "b"]  # no space where the default is one: a join
    assert vocab.tokenize("a ,b") == ["a", " ", ",", JOIN, "b"]  # a space before a mark is a token
    assert vocab.tokenize(" a\t") == [" ", "a", "\t"]  # leading and trailing whitespace are tokens
    assert vocab.tokenize("x_y") == ["x", "_", JOIN, "y"]  # "_" is punctuation
    assert vocab.tokenize("ab12 ٣٤") == ["ab12", "٣٤"]


def test_combining_marks_stay_inside_their_word():
    vocab = full_vocab("x")
    assert vocab.tokenize("e\u0301tude हिन्दी") == ["e\u0301tude", "हिन्दी"]
    assert vocab.tokenize("\u0301a") == ["\u0301", JOIN, "a"]  # a mark that starts a token is punctuation


def test_mixed_text_round_trips_exactly():
    vocab = full_vocab(MIXED)
    ids = vocab.encode(MIXED)
    assert vocab.decode(ids) == MIXED
    assert UNK not in ids.tolist()
    assert len(ids) == len(vocab.tokenize(MIXED)) < len(MIXED) / 2


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=ALPHABET, max_size=60))
def test_any_text_round_trips_when_its_tokens_are_in_the_vocabulary(text):
    vocab = full_vocab(text)
    assert vocab.decode(vocab.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.sampled_from(["the", "Cat", "sat", ",", ".", "ünï", "中", "'", "<unk>"]), max_size=12),
       gaps=st.lists(st.sampled_from(["", " ", "  ", "\n", " \n", "\t"]), min_size=13, max_size=13))
def test_out_of_vocabulary_tokens_lose_only_their_text(words, gaps):
    known = ["the", "sat", ",", "'"]
    training = "the sat,the 'sat'\nthe  the\t, \n,the"  # every separator kind and the join
    vocab = WordVocab.build(count_word_tokens([training + DOC_END])[0], max_vocab=None)
    assert all(t in vocab for t in known + [JOIN, " ", "  ", "\n", " \n", "\t"])
    text = "".join(g + w for g, w in zip(gaps, words + [""], strict=False))
    expected = "".join(t if t.isspace() or t in known else "<unk>"
                       for t in re.findall(r"\s+|<unk>|\w+|\S", text))
    assert vocab.decode(vocab.encode(text)) == expected


def test_unk_literal_is_the_unk_id_and_case_sensitive():
    vocab = full_vocab("a <unk> b <UNK>")
    assert "<unk>" not in vocab.tokens
    assert vocab.tokenize("a <unk>") == ["a", "<unk>"]
    ids = vocab.encode("a <unk>b")
    assert ids.tolist() == [vocab.encode("a")[0], UNK, 2 + vocab.tokens.index(JOIN), vocab.encode("b")[0]]
    assert vocab.decode(ids) == "a <unk>b"
    assert vocab.tokenize("<UNK>") == ["<", JOIN, "UNK", ">"]
    assert vocab.unknown("<unk> zz a zz <unk> yy") == ["zz", "yy"]


def test_max_vocab_keeps_the_most_frequent_and_breaks_ties_by_code_point():
    counts = {"b": 3, "a": 3, "c": 5, "d": 1, " ": 3, "<unk>": 9}
    vocab = WordVocab.build(counts, max_vocab=3)
    assert vocab.tokens == ("c", " ", "a")
    assert vocab.size == 5
    assert vocab.encode("c a").tolist() == [2, 4]
    assert vocab.encode("b").tolist() == [UNK]
    assert WordVocab.build(counts, min_count=3, max_vocab=None).tokens == ("c", " ", "a", "b")
    assert WordVocab.build(dict(reversed(list(counts.items())))) == WordVocab.build(counts)


def test_default_cap_is_ten_thousand_tokens():
    counts = {f"w{i}": 1 + i % 7 for i in range(10_050)}
    vocab = WordVocab.build(counts)
    assert len(vocab.tokens) == 10_000 and vocab.size == 10_002 and vocab.id_dtype == np.uint16
    assert vocab.tokens[0] == "w1000"  # count 7, the lowest string among them
    with pytest.raises(ValueError, match="min_count"):
        WordVocab.build(counts, min_count=0)
    with pytest.raises(ValueError, match="max_vocab"):
        WordVocab.build(counts, max_vocab=0)


def test_lowercase_vocabulary_lowercases_every_token():
    counts = count_word_tokens(["Hello HELLO hello,  World" + DOC_END], lowercase=True)[0]
    assert counts["hello"] == 3 and "Hello" not in counts
    vocab = WordVocab.build(counts, lowercase=True)
    assert vocab.lowercase
    assert vocab.encode("HeLLo World").tolist() == vocab.encode("hello world").tolist()
    assert vocab.decode(vocab.encode("Hello,  WORLD")) == "hello,  world"
    assert vocab.unknown("Hello Mars") == ["mars"]
    assert WordVocab.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab
    assert vocab != full_vocab("hello , world")


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


def test_decoder_context_implies_the_separator_before_a_word():
    vocab = full_vocab("the cat sat.")
    the, cat, dot = (int(vocab.encode(t)[0]) for t in ("the", "cat", "."))
    assert vocab.decoder(context=[EOS, the]).feed([cat, dot]) == " cat."
    assert vocab.decoder(context=[EOS]).feed([cat]) == "cat"
    assert vocab.decode([the, EOS, cat, UNK], eos="|", unk="?") == "the|cat ?"
    with pytest.raises(ValueError, match="ids must lie in"):
        vocab.decode([vocab.size])


@settings(max_examples=100, deadline=None)
@given(docs=st.lists(st.text(alphabet=ALPHABET.replace("\n", ""), min_size=1, max_size=30), min_size=1,
                     max_size=4))
def test_char_count_is_the_text_length_plus_one_per_document_end(docs):
    vocab = full_vocab(*docs)
    ids = [EOS]
    for doc in docs:
        ids += [*vocab.encode(doc).tolist(), EOS]
    assert vocab.char_count(ids) == sum(map(len, docs)) + len(docs)
    assert vocab.char_count(ids[:1]) == 0.0


def test_char_count_counts_unk_length_per_unknown_token():
    vocab = full_vocab("a b")
    ids = [EOS, *vocab.encode("a zzz b").tolist(), EOS]
    assert ids[2] == UNK
    assert vocab.char_count(ids) == 1 + 1 + 5 + 1 + 1 + 1  # "a", " " + <UNK>, " b", the document end
    assert vocab.char_count(ids, unk_length=3.0) == len("a zzz b") + 1


@settings(max_examples=150, deadline=None)
@given(docs=st.lists(st.text(alphabet=ALPHABET + "Σς", max_size=25), min_size=1, max_size=4), data=st.data(),
       cap=st.sampled_from([None, 3, 8]), lowercase=st.booleans())
def test_text_read_in_pieces_encodes_and_counts_as_the_whole(docs, data, cap, lowercase):
    stream = "".join(d + DOC_END for d in docs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    counts = count_word_tokens([stream], lowercase=lowercase)
    assert count_word_tokens(pieces, lowercase=lowercase) == counts
    vocab = WordVocab.build(counts[0], max_vocab=cap, lowercase=lowercase)
    whole = list(vocab.iter_encode([stream]))
    parts = list(vocab.iter_encode(pieces))
    assert np.concatenate([p[0] for p in parts]).tolist() == np.concatenate([p[0] for p in whole]).tolist()
    assert sum(p[1] for p in parts) == sum(p[1] for p in whole) == sum(map(len, docs))
    assert sum(p[2] for p in parts) == sum(p[2] for p in whole)
    expected = []
    for doc in docs:
        expected += [*vocab.encode(doc).tolist(), EOS]
    assert np.concatenate([p[0] for p in whole]).tolist() == expected


def test_held_back_text_waits_for_the_rest_of_a_token():
    rounds = list(iter_segments(["ab <u", "nk> c", "d" + DOC_END]))
    done = [t for seg, n in rounds for t in seg.tokens[:n]]
    assert done == segment("ab <unk> cd" + DOC_END).tokens


def test_unknown_lists_words_and_marks_in_first_seen_order():
    vocab = full_vocab("a b")
    assert vocab.unknown("zz a ; zz b yy\n") == ["zz", ";", "yy"]
    assert vocab.unknown("a b") == []


def test_token_text_names_specials_and_the_join():
    vocab = full_vocab("a.b\n")
    texts = [vocab.token_text(i) for i in range(vocab.size)]
    assert texts[:2] == ["<EOS>", "<UNK>"]
    assert sorted(texts[2:]) == sorted(["a", ".", "<join>", "b", "\n"])


def test_dict_form_round_trips_and_dispatches_on_the_kind():
    vocab = full_vocab(MIXED)
    d = vocab.to_dict()
    assert d["kind"] == "word" and d["specials"] == ["<EOS>", "<UNK>"] and d["lowercase"] is False
    again = tokenizer_from_dict(json.loads(json.dumps(d, ensure_ascii=False)))
    assert isinstance(again, WordVocab) and again == vocab
    assert again.encode(MIXED).tolist() == vocab.encode(MIXED).tolist()
    old_char = tokenizer_from_dict({"specials": ["<EOS>", "<UNK>"], "chars": ["a", "b"]})
    assert old_char.kind == "char" and old_char.tokens == ("a", "b")


WORD = {"kind": "word", "lowercase": False, "specials": ["<EOS>", "<UNK>"]}


@pytest.mark.parametrize(("bad", "message"), [
    ({**WORD, "kind": "words", "tokens": []}, "unknown tokenizer kind 'words'"),
    ({**WORD, "tokens": ["a b"]}, "token 0 is not a word"),
    ({**WORD, "tokens": ["the", "ab."]}, "token 1 is not a word"),
    ({**WORD, "tokens": ["<unk>"]}, "not a word"),
    ({**WORD, "tokens": ["\ud800"]}, "not a word"),
    ({**WORD, "tokens": [7]}, "not a word"),
    ({**WORD, "tokens": ["a", "a"]}, "more than once"),
    ({**WORD, "tokens": "abc"}, "must be a list"),
    ({**WORD, "lowercase": "no", "tokens": []}, "true or false"),
    ({**WORD, "specials": ["<UNK>", "<EOS>"], "tokens": []}, "specials"),
    ({**WORD, "tokens": [], "chars": []}, "the keys"),
    (WORD, "the keys"),
])
def test_malformed_word_dicts_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        tokenizer_from_dict(bad)


def test_the_char_vocabulary_shares_the_interface():
    vocab = tokenizer_from_dict({"kind": "char", "specials": ["<EOS>", "<UNK>"], "chars": ["a", "b"]})
    assert vocab.tokens == ("a", "b") and vocab.lowercase is False
    assert [vocab.token_text(i) for i in range(4)] == ["<EOS>", "<UNK>", "a", "b"]
    ids = [EOS, *vocab.encode("abz").tolist(), EOS]
    assert vocab.char_count(ids) == 4.0 and vocab.char_count(ids, unk_length=3.0) == 6.0
    decoder = vocab.decoder(context=[EOS, 2])
    assert decoder.feed(ids[:2]) + decoder.feed(ids[2:]) == vocab.decode(ids) == "\nab\ufffd\n"
    assert vocab.unknown("zab🙂z") == ["z", "🙂"]
