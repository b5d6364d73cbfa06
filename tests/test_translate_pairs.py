"""Sentence pairs for `--task translate`: the file's rules, references, and a held-out split by source."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlm.errors import CorpusError
from charlm.tasks.translate.pairs import one_to_many, read_pairs, references, split_by_source, split_pairs
from charlm.text.batching import held_out_count


def write(tmp_path, text: str):
    path = tmp_path / "pairs.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_pairs_are_read_in_file_order_and_a_third_column_is_counted_not_kept(tmp_path):
    path = write(tmp_path, "Va !\tGo.\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n\n"
                           "Cours !\tRun.\n read \t R EH1 D \n")
    pairs = read_pairs(path)
    assert pairs.sources == ["Va !", "Cours !", "read"]
    assert pairs.targets == ["Go.", "Run.", "R EH1 D"]
    assert pairs.lines == [1, 3, 4] and pairs.extra_columns == 1


@pytest.mark.parametrize("text, fragment", [
    ("a\tb\nno tab here\n", "pairs.tsv:2: no tab (expected source<TAB>target), got 'no tab here'"),
    ("a\tb\n\tb\n", "pairs.tsv:2: the source is empty"),
    ("a\tb\nc\t  \n", "pairs.tsv:2: the target is empty"),
    ("\n\n", "pairs.tsv: no pairs"),
])
def test_a_bad_line_names_the_file_and_line(tmp_path, text, fragment):
    with pytest.raises(CorpusError) as caught:
        read_pairs(write(tmp_path, text))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_the_same_source_on_several_lines_is_several_references():
    grouped = references(["read", "cat", "read"], ["R EH1 D", "K AE1 T", "R IY1 D"])
    assert grouped == {"read": ["R EH1 D", "R IY1 D"], "cat": ["K AE1 T"]}


@given(st.lists(st.sampled_from("abcdefgh"), min_size=2, max_size=60), st.floats(0.05, 0.9), st.integers(0, 99))
def test_the_split_keeps_every_line_of_a_source_on_one_side(sources, fraction, seed):
    train, held = split_by_source(sources, fraction, seed)
    assert sorted([*train, *held]) == list(range(len(sources)))  # every line once
    train_sources, held_sources = {sources[i] for i in train}, {sources[i] for i in held}
    assert not train_sources & held_sources
    if len(set(sources)) >= 2:
        assert train_sources and held_sources  # at least one held out, never all
        assert len(held_sources) == held_out_count(len(set(sources)), fraction)


def test_the_split_is_seeded_and_none_without_a_fraction():
    sources = [f"s{i % 7}" for i in range(30)]
    assert [a.tolist() for a in split_by_source(sources, 0.3, 1)] == [a.tolist() for a in
                                                                       split_by_source(sources, 0.3, 1)]
    train, held = split_by_source(sources, 0.0, 1)
    assert len(held) == 0 and len(train) == 30


def test_one_to_many_data_is_held_out_line_by_line():
    """A label -> its names: holding out whole sources would hold out whole labels; lines are held out instead,
    and every label stays in training."""
    sources = [f"label{i % 4}" for i in range(400)]
    assert one_to_many(sources)
    train, held = split_pairs(sources, 0.1, seed=3)
    assert len(held) == 40 and len(train) == 360
    assert {sources[i] for i in train} == set(sources)
    words = [f"word{i // 2}" for i in range(400)]  # two references a word: held out by source
    assert not one_to_many(words)
    train, held = split_pairs(words, 0.1, seed=3)
    assert not {words[i] for i in train} & {words[i] for i in held}
