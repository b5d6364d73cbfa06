"""Train/validation split and the truncated-BPTT batcher."""

import json

import numpy as np
import pytest

from charlm.errors import ConfigError
from charlm.text.batching import Batcher, held_out_count, held_out_mask, split_train_val
from charlm.text.cache import prepare_corpus
from charlm.text.tokenizer import EOS


def docs_of(ids) -> list[tuple]:
    """Documents of a stream as tuples of ids; checks the stream starts and ends with <EOS>."""
    ids = list(np.asarray(ids))
    assert ids[0] == EOS and ids[-1] == EOS
    docs, current = [], []
    for i in ids[1:]:
        if i == EOS:
            docs.append(tuple(current))
            current = []
        else:
            current.append(int(i))
    return docs


# -- split ---------------------------------------------------------------------------------------------


def test_file_mode_holds_out_the_tail(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("abcdefghij" * 10)
    corpus = prepare_corpus(path)
    train, val = split_train_val(corpus, 0.1, seed=0)
    chars = np.asarray(corpus.ids[1:-1])
    assert np.array_equal(train[1:-1], chars[:90])
    assert np.array_equal(val[1:-1], chars[90:])
    assert train[0] == train[-1] == val[0] == val[-1] == EOS


@pytest.mark.parametrize("mode", ["lines", "paragraphs"])
def test_document_modes_hold_out_whole_documents_seeded(tmp_path, mode):
    separator = "\n" if mode == "lines" else "\n\n"
    path = tmp_path / "names.txt"
    path.write_text(separator.join(f"name{i:03d}" for i in range(200)) + "\n")
    corpus = prepare_corpus(path, eos_mode=mode)
    train, val = split_train_val(corpus, 0.25, seed=7)
    all_docs, train_docs, val_docs = docs_of(corpus.ids), docs_of(train), docs_of(val)
    assert len(val_docs) == 50 and len(train_docs) == 150
    assert sorted(train_docs + val_docs) == sorted(all_docs)
    assert not set(train_docs) & set(val_docs)
    # order within each part follows the corpus, and the held-out set is not simply the tail
    position = {doc: i for i, doc in enumerate(all_docs)}
    assert [position[d] for d in val_docs] == sorted(position[d] for d in val_docs)
    assert val_docs != all_docs[-50:]
    again_train, again_val = split_train_val(corpus, 0.25, seed=7)
    assert np.array_equal(again_val, val) and np.array_equal(again_train, train)
    assert not np.array_equal(split_train_val(corpus, 0.25, seed=8)[1], val)


def test_zero_fraction_means_no_validation(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("hello")
    corpus = prepare_corpus(path)
    train, val = split_train_val(corpus, 0.0, seed=0)
    assert val is None and np.array_equal(train, corpus.ids)


def test_single_document_cannot_be_split_by_documents(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("only one line\n")
    with pytest.raises(ConfigError, match="1 document"):
        split_train_val(prepare_corpus(path, eos_mode="lines"), 0.1, seed=0)


# -- batcher -------------------------------------------------------------------------------------------


def batches(batcher, n):
    return [batcher.next_batch() + (batcher.new_epoch,) for _ in range(n)]


def test_shapes_dtype_contiguity_and_shifted_targets():
    ids = np.arange(1000) % 251
    batcher = Batcher(ids.astype(np.uint8), batch=4, seq_len=7, seed=0)
    x, y = batcher.next_batch()
    for a in (x, y):
        assert a.shape == (7, 4) and a.dtype == np.int32 and a.flags.c_contiguous
    offset = batcher.epoch_offset(0)
    stream_len = batcher.stream_len
    for b in range(4):
        start = offset + b * stream_len
        assert np.array_equal(x[:, b], ids[start:start + 7])
        assert np.array_equal(y[:, b], ids[start + 1:start + 8])


def test_streams_continue_across_batches_and_cover_the_epoch():
    ids = np.arange(5000, dtype=np.uint32)  # every value distinct: positions are readable
    batcher = Batcher(ids, batch=3, seq_len=10, seed=1)
    n = batcher.batches_per_epoch
    epoch = batches(batcher, n)
    assert [new for _, _, new in epoch] == [True] + [False] * (n - 1)
    for (x0, y0, _), (x1, _, _) in zip(epoch[:-1], epoch[1:], strict=True):
        assert np.array_equal(x1[0], x0[-1] + 1)  # next chunk starts right after the last one
        assert np.array_equal(x1[0], y0[-1])
    streams = np.concatenate([x for x, _, _ in epoch])  # (n*T, B)
    assert np.array_equal(streams[:, 1], streams[:, 0] + batcher.stream_len)
    assert len(np.unique(streams)) == streams.size
    _, _, new = batches(batcher, 1)[0]
    assert new and batcher.epoch == 1 and batcher.cursor == {"epoch": 1, "batch": 1}


def test_epochs_have_seeded_offsets_and_a_fixed_length():
    ids = np.arange(10_000, dtype=np.uint32)
    offsets = {Batcher(ids, 2, 50, seed=s).epoch_offset(e) for s in range(3) for e in range(10)}
    assert len(offsets) > 5 and all(0 <= o < 50 for o in offsets)
    one, two = Batcher(ids, 2, 50, seed=3), Batcher(ids, 2, 50, seed=3)
    for _ in range(3 * one.batches_per_epoch):
        first, second = one.next_batch(), two.next_batch()
        assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert one.epoch == 3


def test_cursor_restore_continues_exactly():
    ids = (np.arange(3001) * 7 % 97).astype(np.uint8)
    reference = Batcher(ids, batch=5, seq_len=8, seed=11)
    for _ in range(reference.batches_per_epoch + 4):
        reference.next_batch()
    cursor = json.loads(json.dumps(reference.cursor))
    restored = Batcher.restore(ids, 5, 8, 11, cursor)
    assert restored.cursor == reference.cursor
    for _ in range(2 * reference.batches_per_epoch):
        x_ref, y_ref = reference.next_batch()
        x_res, y_res = restored.next_batch()
        assert np.array_equal(x_ref, x_res) and np.array_equal(y_ref, y_res)
        assert reference.new_epoch == restored.new_epoch


@pytest.mark.parametrize("cursor", [{"epoch": 0}, {"epoch": 0, "batch": 10_000}, {"epoch": -1, "batch": 0},
                                    {"epoch": 0, "batch": 1.5}, None])
def test_restore_rejects_a_cursor_that_does_not_fit(cursor):
    with pytest.raises(ConfigError, match="cursor"):
        Batcher.restore(np.zeros(500, np.uint8), 2, 10, 0, cursor)


def test_stream_just_long_enough_works_with_zero_offset():
    batcher = Batcher(np.arange(41, dtype=np.uint8), batch=4, seq_len=10, seed=5)
    assert batcher.batches_per_epoch == 1
    x, y = batcher.next_batch()
    assert np.array_equal(x[:, 0], np.arange(10)) and y[-1, 3] == 40


def test_too_short_stream_names_flags_length_and_largest_batch():
    with pytest.raises(ConfigError) as caught:
        Batcher(np.zeros(100, np.uint8), batch=16, seq_len=10, seed=0)
    message = str(caught.value)
    for part in ("--batch", "--seq-len", "100 ids", "largest --batch that fits with --seq-len 10 is 9"):
        assert part in message
    with pytest.raises(ConfigError, match="--seq-len 4 or less"):
        Batcher(np.zeros(5, np.uint8), batch=1, seq_len=10, seed=0)


def test_a_held_out_share_is_rounded_at_least_one_and_never_all():
    assert [held_out_count(n, f) for n, f in [(10, 0.1), (100, 0.25), (3, 0.01), (2, 0.9), (10, 0.0)]] == \
        [1, 25, 1, 1, 0]
    mask = held_out_mask(40, 0.25, seed=3)
    assert mask.dtype == bool and mask.sum() == 10
    np.testing.assert_array_equal(mask, held_out_mask(40, 0.25, seed=3))  # seeded
    assert not np.array_equal(mask, held_out_mask(40, 0.25, seed=4))
