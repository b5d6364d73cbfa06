"""Vocabulary: deterministic ids, folding into <UNK>, vectorised round trips, validated JSON form."""

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from charlm.text.tokenizer import EOS, UNK, Vocab, tokenizer_from_dict

MIXED = "Привет, мир! 中文字符 🙂🚀 e\u0301 naïve\n\ttab ß 𝔘"


def test_specials_then_code_point_order():
    vocab = Vocab.build(Counter("cab\u00e9a"))
    assert vocab.chars == ("a", "b", "c", "\u00e9")
    assert vocab.size == 6
    assert vocab.encode("abc\u00e9").tolist() == [2, 3, 4, 5]


def test_build_is_deterministic_regardless_of_count_order():
    counts = Counter(MIXED)
    reversed_counts = dict(reversed(list(counts.items())))
    assert Vocab.build(counts) == Vocab.build(reversed_counts)
    assert Vocab.build(counts).chars == tuple(sorted(set(MIXED), key=ord))


def test_build_is_identical_across_hash_seeds():
    script = ("import json; from collections import Counter; from charlm.text.tokenizer import Vocab; "
              f"print(json.dumps(Vocab.build(Counter({MIXED!r} * 3 + 'xyz')).to_dict()))")
    outputs = set()
    for hash_seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_min_count_folds_rare_characters_into_unk():
    vocab = Vocab.build({"a": 5, "b": 2, "c": 1}, min_count=2)
    assert vocab.chars == ("a", "b")
    assert vocab.encode("abc").tolist() == [2, 3, UNK]


def test_max_vocab_keeps_most_frequent_and_breaks_ties_by_code_point():
    counts = {"z": 9, "y": 4, "x": 4, "w": 4, "a": 1}
    vocab = Vocab.build(counts, max_vocab=3)
    # z is most frequent; among the tied w, x, y the two lowest code points win
    assert vocab.chars == ("w", "x", "z")
    assert vocab.size == 5
    assert vocab.encode("y").tolist() == [UNK]


def test_min_count_and_max_vocab_together():
    vocab = Vocab.build({"a": 10, "b": 9, "c": 1, "d": 8}, min_count=2, max_vocab=2)
    assert vocab.chars == ("a", "b")


@pytest.mark.parametrize("text", [
    "Съешь же ещё этих мягких французских булок",
    "汉字和日本語のかな",
    "emoji 🙂 outside the BMP 🚀𝔘",
    "combining: e\u0301 a\u0308 o\u0302\u0323",
    MIXED,
])
def test_encode_decode_round_trip(text):
    vocab = Vocab.build(Counter(text))
    ids = vocab.encode(text)
    assert ids.shape == (len(text),)
    assert ids.dtype == vocab.id_dtype
    assert vocab.decode(ids) == text
    assert not np.isin(ids, [EOS, UNK]).any()


def test_unknown_characters_encode_to_unk_and_are_listed():
    vocab = Vocab.build(Counter("abc"))
    ids = vocab.encode("a🙂bЖ\U0010ffff")
    assert ids.tolist() == [2, UNK, 3, UNK, UNK]
    assert vocab.unknown("a🙂bЖ🙂") == ["Ж", "🙂"]
    assert vocab.decode(ids, unk="?") == "a?b??"


def test_decode_writes_eos_and_rejects_out_of_range_ids():
    vocab = Vocab.build(Counter("ab"))
    assert vocab.decode([EOS, 2, 3, EOS], eos="|") == "|ab|"
    assert vocab.decode([EOS, 2], eos="") == "a"
    with pytest.raises(ValueError, match="0..3"):
        vocab.decode([4])


@pytest.mark.parametrize(("n_chars", "dtype"), [(254, np.uint8), (255, np.uint16), (65534, np.uint16),
                                                  (65535, np.uint32)])
def test_id_dtype_fits_the_vocabulary(n_chars, dtype):
    chars = [chr(c) for c in range(0x20, 0x20 + n_chars + 0x800) if not 0xD800 <= c < 0xE000][:n_chars]
    vocab = Vocab(chars)
    assert vocab.id_dtype == dtype
    assert int(vocab.encode(chars[-1])[0]) == vocab.size - 1


def test_encode_large_text_is_vectorised_and_exact():
    rng = np.random.default_rng(0)
    alphabet = np.array(list("abcdeЖ中🙂\n "))
    text = "".join(rng.choice(alphabet, size=200_000))
    vocab = Vocab.build(Counter(text))
    ids = vocab.encode(text)
    lookup = {c: i + 2 for i, c in enumerate(vocab.chars)}
    assert ids.tolist() == [lookup[c] for c in text]


def test_dict_form_names_the_kind_and_older_dicts_without_it_are_char_vocabularies():
    vocab = Vocab.build(Counter("abc"))
    assert vocab.kind == "char"
    assert vocab.to_dict() == {"kind": "char", "specials": ["<EOS>", "<UNK>"], "chars": ["a", "b", "c"]}
    older = {"specials": ["<EOS>", "<UNK>"], "chars": ["a", "b", "c"]}
    assert Vocab.from_dict(older) == vocab and Vocab.from_dict(older).kind == "char"


def test_dict_round_trip_through_json():
    vocab = Vocab.build(Counter(MIXED))
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab
    assert again.encode(MIXED).tolist() == vocab.encode(MIXED).tolist()


@pytest.mark.parametrize(("bad", "message"), [
    ([], "JSON object"),
    ({"specials": ["<EOS>", "<UNK>"]}, "the keys"),
    ({"kind": "char", "specials": ["<EOS>", "<UNK>"], "chars": [], "extra": 1}, "the keys"),
    ({"kind": "bpe", "specials": ["<EOS>", "<UNK>"], "merges": ["t h"]}, "unknown tokenizer kind 'bpe'"),
    ({"kind": None, "specials": ["<EOS>", "<UNK>"], "chars": []}, "unknown tokenizer kind None"),
    ({"kind": "word", "specials": ["<EOS>", "<UNK>"], "words": ["the"]}, "the keys"),
    ({"specials": ["<UNK>", "<EOS>"], "chars": []}, "specials"),
    ({"specials": ["<EOS>", "<UNK>"], "chars": "abc"}, "must be a list"),
    ({"specials": ["<EOS>", "<UNK>"], "chars": ["ab"]}, "single character"),
    ({"specials": ["<EOS>", "<UNK>"], "chars": [7]}, "single character"),
    ({"specials": ["<EOS>", "<UNK>"], "chars": ["b", "a"]}, "code-point order"),
    ({"specials": ["<EOS>", "<UNK>"], "chars": ["a", "a"]}, "distinct"),
])
def test_from_dict_rejects_malformed_input(bad, message):
    with pytest.raises(ValueError, match=message):
        tokenizer_from_dict(bad)


def test_char_vocab_refuses_another_kind():
    with pytest.raises(ValueError, match="'word' is not a character vocabulary"):
        Vocab.from_dict({"kind": "word", "specials": ["<EOS>", "<UNK>"], "chars": []})


def test_build_rejects_nonsense_options():
    with pytest.raises(ValueError, match="min_count"):
        Vocab.build({"a": 1}, min_count=0)
    with pytest.raises(ValueError, match="max_vocab"):
        Vocab.build({"a": 1}, max_vocab=0)
