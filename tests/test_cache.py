"""The memory-mapped id cache: where entries live, when they are reused, rebuilt or pruned."""

import json
import os

import numpy as np
import pytest

import charlm.text.cache as cache_module
from charlm.atomic import TEMP_GLOB
from charlm.errors import CorpusError
from charlm.text.cache import prepare_corpus


def write(tmp_path, data: bytes, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


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
    assert not list(corpus.cache_path.parent.glob(TEMP_GLOB))


def test_second_prepare_reuses_the_cache_without_encoding(tmp_path, monkeypatch):
    path = write(tmp_path, "some text, some more: ЖЖ\n".encode() * 50)
    first = prepare_corpus(path)
    stat = first.cache_path.stat()

    def fail(*args, **kwargs):
        raise AssertionError("the corpus was encoded again")

    monkeypatch.setattr(cache_module, "_write_cache_entry", fail)
    monkeypatch.setattr(cache_module, "count_tokens", fail)
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
    assert second.vocab.decode(second.ids, eos="|") == "|second version!|"


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
    monkeypatch.setattr(cache_module, "CACHE_MAX_BYTES", int(3.5 * entry_size))
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
    assert cache_module.prune_cache(cache / "corpus", entries_bytes) == ["0" * 64] and not orphan.exists()
    # The entry named `keep` stays even when it alone is over the limit.
    kept = prepare_corpus(tmp_path / "d.txt", cache_dir=cache).cache_path.stem
    assert len(cache_module.prune_cache(cache / "corpus", 0, keep=kept)) == 2
    assert sorted(p.name for p in (cache / "corpus").iterdir()) == [f"{kept}.ids", f"{kept}.json"]


def test_cache_key_includes_the_token_kind_and_lowercasing(tmp_path):
    path = write(tmp_path, b"Big big words, BIG words.")
    chars = prepare_corpus(path)
    words = prepare_corpus(path, tokens="word")
    lower = prepare_corpus(path, tokens="word", lowercase=True)
    assert len({chars.cache_path, words.cache_path, lower.cache_path}) == 3
    assert (chars.vocab.kind, words.vocab.kind, lower.vocab.kind) == ("char", "word", "word")
    assert lower.vocab.lowercase and "big" in lower.vocab and "Big" in words.vocab
    again = prepare_corpus(path, tokens="word", lowercase=True)
    assert again.cache_path == lower.cache_path and again.vocab == lower.vocab
    meta = json.loads(lower.cache_path.with_suffix(".json").read_text())
    assert meta["options"]["tokens"] == "word" and meta["options"]["max_vocab"] == 10_000
    assert meta["counts"]["big"] == 3 and meta["unk_chars"] == 0
