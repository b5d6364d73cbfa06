"""`charlm vocab` and `charlm corpus`: output for people and scripts, one-line errors for bad input."""

import json

import pytest
from helpers import invoke

from charlm.cli.commands.vocab import shown_char, shown_token
from charlm.text.catalogue import TINYSHAKESPEARE_BYTES, TINYSHAKESPEARE_SHA256


def test_vocab_json_reports_counts_documents_and_folding(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("anna\nbob\n\nЖ🙂\n", encoding="utf-8")
    result = invoke("vocab", path, "--eos", "lines", "--min-count", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["n_docs"], report["n_chars"], report["n_distinct"]) == (3, 9, 6)
    assert report["chars"][0] == {"char": "a", "codepoint": 97, "count": 2, "share": 2 / 9}
    assert [c["char"] for c in report["chars"]] == ["a", "b", "n", "o", "Ж", "🙂"]
    assert report["unk"] == {"chars": ["o", "Ж", "🙂"], "occurrences": 3}
    assert report["vocab"]["chars"] == ["a", "b", "n"]
    assert report["vocab_size"] == 5


def test_vocab_max_vocab_and_top(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("aaaabbbcc d", encoding="utf-8")
    report = json.loads(invoke("vocab", path, "--max-vocab", "2", "--top", "1", "--json").stdout)
    assert [c["char"] for c in report["chars"]] == ["a"]
    assert report["unk"] == {"chars": ["c", " ", "d"], "occurrences": 4}


def test_vocab_table_for_people(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("ab a\n", encoding="utf-8")
    result = invoke("vocab", path, "--min-count", "2")
    assert result.exit_code == 0
    for part in ("U+0061", "space", "\\n", "5 characters in 1 document(s), 4 distinct", "folded into <UNK>",
                 "3 characters"):
        assert part in result.stdout, part


@pytest.mark.parametrize(("char", "shown"), [(" ", "space"), ("\n", "\\n"), ("\x0b", "\\x0b"),
                                             ("\u3000", "\\u3000"), ("\u0301", "\u25cc\u0301"), ("Ж", "Ж")])
def test_characters_are_shown_readably(char, shown):
    assert shown_char(char) == shown


WORDS = "The cat sat.\nThe dog sat!\nA cat, a dog\n<unk> sat  there\nthe end.\n"


def test_vocab_words_json_reports_tokens_folding_and_unk_rates(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(WORDS, encoding="utf-8")
    result = invoke("vocab", path, "--tokens", "word", "--eos", "lines", "--min-count", "2", "--val-fraction",
                    "0.4", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["kind"], report["lowercase"], report["n_docs"]) == ("word", False, 5)
    assert report["n_chars"] == len(WORDS) - 5
    assert report["tokens"][0] == {"token": "sat", "shown": "sat", "count": 3, "share": 3 / report["n_tokens"]}
    assert report["vocab"]["tokens"] == ["sat", ".", "The", "cat", "dog"]
    assert "<unk>" in report["unk"]["tokens"] and "the" in report["unk"]["tokens"]
    # 19 tokens and 5 document ends: "A", "!", ",", "the", "end" and "<unk>" are <UNK>, and the join after
    # "sat"/"cat" and the "  " separator are not in the vocabulary
    assert report["unk"]["ids"] == 8 and report["unk"]["rate"] == 8 / 24
    held = report["held_out"]
    assert held["val_fraction"] == 0.4 and held["tokens"] > 0 and 0 < held["unk_rate"] <= 1


def test_vocab_words_lowercase_and_the_table_for_people(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(WORDS + "don't\n", encoding="utf-8")
    lower = json.loads(invoke("vocab", path, "--tokens", "word", "--lowercase", "--json", "-q").stdout)
    assert lower["lowercase"] and lower["vocab"]["lowercase"] and "The" not in lower["vocab"]["tokens"]
    result = invoke("vocab", path, "--tokens", "word", "--max-vocab", "3")
    assert result.exit_code == 0, result.output
    for part in ("token", "\\n", "'  '", "<join>", "tokens in 1 document(s)", "--max-vocab 3",
                 "<UNK> in the corpus:", "<UNK> in the held-out part (--val-fraction 0.1):"):
        assert part in result.stdout, part
    refused = invoke("vocab", path, "--lowercase")
    assert refused.exit_code == 2 and "word tokens and symbols only" in refused.output


def test_vocab_chars_with_val_fraction_add_the_held_out_rate(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("abcabcabcz", encoding="utf-8")
    plain = json.loads(invoke("vocab", path, "--json").stdout)
    assert "held_out" not in plain and plain["kind"] == "char"
    report = json.loads(invoke("vocab", path, "--max-vocab", "3", "--val-fraction", "0.2", "--json").stdout)
    assert report["held_out"]["tokens"] == 3 and report["held_out"]["unk"] == 1  # "cz" and the end
    table = invoke("vocab", path, "--val-fraction", "0.2").stdout
    assert "<UNK> in the held-out part (--val-fraction 0.2): 0 of 3 characters" in table


@pytest.mark.parametrize(("token", "shown"), [("", "<join>"), (" ", "space"), ("\n", "\\n"), ("  ", "'  '"),
                                              (" \n", "' \\n'"), ("word", "word"), ("\u0301", "\u25cc\u0301")])
def test_tokens_are_shown_readably(token, shown):
    assert shown_token(token) == shown


@pytest.mark.parametrize(("make", "expected_code", "phrase"), [
    (lambda d: d / "missing.txt", 2, "does not exist"),
    (lambda d: d, 2, "is a directory"),
    (lambda d: _file(d, b""), 1, "corpus is empty"),
    (lambda d: _file(d, b"\xef\xbb\xbf  \n"), 1, "corpus is empty"),
    (lambda d: _file(d, b"GIF89a\x01\x00\x00\x00\xff"), 1, "looks like a binary file"),
    (lambda d: _file(d, b"caf\xe9\n"), 1, "--encoding"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, make, expected_code, phrase):
    result = invoke("vocab", make(tmp_path), "--quiet")
    assert result.exit_code == expected_code
    assert phrase in result.output
    assert "Traceback" not in result.output
    if expected_code == 1:  # our own errors: exactly one line on stderr, nothing on stdout
        assert result.stdout == ""
        assert result.stderr.strip().count("\n") == 0


def _file(directory, data: bytes):
    path = directory / "corpus.txt"
    path.write_bytes(data)
    return path


def test_unknown_encoding_is_a_usage_error(tmp_path):
    result = invoke("vocab", _file(tmp_path, b"abc"), "--encoding", "klingon")
    assert result.exit_code == 2 and "unknown encoding 'klingon'" in result.stderr


def test_corpus_list_json_names_the_catalogue():
    result = invoke("corpus", "list", "--json")
    names = [entry["name"] for entry in json.loads(result.stdout)["corpora"]]
    assert names == ["tinyshakespeare", "python-stdlib", "cmudict"]


def test_corpus_get_python_stdlib(tmp_path):
    out = tmp_path / "std.txt"
    result = invoke("corpus", "get", "python-stdlib", "-o", out, "--max-bytes", "100000", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["bytes"] == out.stat().st_size <= 100_000
    assert out.read_text(encoding="utf-8").startswith("# file: ")


def test_corpus_get_tinyshakespeare_is_the_catalogue_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CHARLM_CORPUS_URL_TINYSHAKESPEARE", raising=False)
    out = tmp_path / "ts.txt"
    result = invoke("corpus", "get", "tinyshakespeare", "-o", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["bytes"], report["sha256"]) == (TINYSHAKESPEARE_BYTES, TINYSHAKESPEARE_SHA256)
    assert out.stat().st_size == TINYSHAKESPEARE_BYTES


@pytest.mark.parametrize("how", ["--url", "environment"])
def test_corpus_get_from_an_unreachable_url_is_one_line(tmp_path, monkeypatch, how):
    dead = "http://127.0.0.1:9/input.txt"  # the discard port: nothing listens
    args = ["corpus", "get", "tinyshakespeare", "-o", tmp_path / "ts.txt", "--timeout", "5", "-q"]
    if how == "--url":
        args += ["--url", dead]
    else:
        monkeypatch.setenv("CHARLM_CORPUS_URL_TINYSHAKESPEARE", dead)
    result = invoke(*args)
    assert result.exit_code == 1
    assert "could not download" in result.stderr and "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "ts.txt").exists()


def test_corpus_get_url_applies_to_tinyshakespeare_only(tmp_path):
    result = invoke("corpus", "get", "python-stdlib", "-o", tmp_path / "std.txt", "--url", "http://127.0.0.1:9/")
    assert result.exit_code == 2 and "only tinyshakespeare can be downloaded" in result.stderr
    assert not (tmp_path / "std.txt").exists()


def test_corpus_get_unknown_name_is_a_usage_error(tmp_path):
    result = invoke("corpus", "get", "nope", "-o", tmp_path / "x.txt")
    assert result.exit_code == 2 and "nope" in result.output
