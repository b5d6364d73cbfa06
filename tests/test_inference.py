"""Forward-only inference: the lean encoder (`charlm.models.inference`, `charlm.engine.infer`) computes what
training's forward computes, and blocks of a batch run side by side (`charlm.engine.rows`) give what one block
gives, for every cell, depth, direction, input layer, precision and kind of network."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from charlm.engine import rows as row_blocks
from charlm.models import classifier, lm, tagger
from charlm.models.config import ModelConfig
from charlm.models.encoder import encoder_forward, init_state
from charlm.models.inference import encoder_infer, join_states, state_rows

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru-simple", "tanh"), ("gru", "tanh"), ("lstm", "tanh")]
TOLERANCE = {"float32": 2e-6, "float64": 1e-12}


def config(cell, activation, dtype, *, layers=2, embed=0, bidirectional=False, V=9, H=6, **kind):
    return ModelConfig(cell=cell, vocab_size=V, hidden=H, layers=layers, embed=embed, activation=activation,
                       dtype=dtype, bidirectional=bidirectional, **kind)


def random_params(init, cfg, seed=0):
    rng = np.random.default_rng(seed)
    params = init(cfg, rng)
    for name, value in params.items():
        if name.endswith(".b"):  # biases start at zero: make them matter
            value += (0.3 * rng.standard_normal(value.shape)).astype(value.dtype)
    return params


def random_state(cfg, B, rng):
    return [tuple((0.5 * rng.standard_normal(a.shape)).astype(cfg.dtype) for a in layer)
            for layer in init_state(cfg, B)]


@pytest.fixture
def two_blocks(monkeypatch):
    """BLAS reports two threads and blocks may be one row thin, so every batch of two or more is split; the
    list records the block counts of every split."""
    monkeypatch.setattr(row_blocks, "blas_threads", lambda: 2)
    monkeypatch.setattr(row_blocks, "MIN_ROWS", 1)
    calls, split = [], row_blocks.row_blocks
    monkeypatch.setattr(row_blocks, "row_blocks", lambda batch, blocks: calls.append(blocks) or split(batch, blocks))
    return calls


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell,activation", CELLS)
@pytest.mark.parametrize("embed,bidirectional,layers", [(0, False, 1), (0, False, 2), (4, False, 2), (0, True, 2),
                                                         (5, True, 1)])
def test_the_lean_encoder_computes_what_training_computes(cell, activation, dtype, embed, bidirectional, layers):
    cfg = config(cell, activation, dtype, layers=layers, embed=embed, bidirectional=bidirectional)
    params = random_params(lm.init_params if not bidirectional else tagger.init_params,
                           cfg if not bidirectional else config(cell, activation, dtype, layers=layers, embed=embed,
                                                                bidirectional=True, heads=(3,)))
    rng = np.random.default_rng(1)
    T, B = 7, 4
    x = rng.integers(0, cfg.vocab_size, (T, B))
    lengths = np.array([7, 3, 1, 5]) if bidirectional else None
    state = random_state(cfg, B, rng) if not bidirectional else init_state(cfg, B)
    want, want_state, _ = encoder_forward(params, cfg, x, state, lengths=lengths)
    got, got_state = encoder_infer(params, cfg, x, state, lengths=lengths, ws={})
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype])
    for got_layer, want_layer in zip(got_state, want_state, strict=True):
        for got_array, want_array in zip(got_layer, want_layer, strict=True):
            np.testing.assert_allclose(got_array, want_array, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell,activation", CELLS)
def test_scoring_in_blocks_of_streams_gives_what_one_block_gives(two_blocks, cell, activation, dtype):
    cfg = config(cell, activation, dtype, embed=3)
    params = random_params(lm.init_params, cfg)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, cfg.vocab_size, (2, 6, 5))
    state = random_state(cfg, 5, rng)
    out, want_state, _ = encoder_forward(params, cfg, x, state)
    logits = out @ params["head.W"] + params["head.b"]
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    want = -np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    workspace = {}
    for _ in range(2):  # the second call reuses the blocks' workspaces
        nll, new_state = lm.forward_nll(params, cfg, x, y, state, workspace=workspace)
        np.testing.assert_allclose(nll, want, rtol=0, atol=10 * TOLERANCE[dtype])
        for got_layer, want_layer in zip(new_state, want_state, strict=True):
            for got_array, want_array in zip(got_layer, want_layer, strict=True):
                np.testing.assert_allclose(got_array, want_array, rtol=0, atol=TOLERANCE[dtype])
    assert two_blocks and set(two_blocks) == {2}
    assert {key[:2] for key in workspace if key[0] == "rows"} == {("rows", 2)}  # one workspace per block
    logits_step, _ = lm.step_logits(params, cfg, x[0], state)
    np.testing.assert_allclose(logits_step, (out @ params["head.W"] + params["head.b"])[0], rtol=0,
                               atol=10 * TOLERANCE[dtype])


@pytest.mark.parametrize("pool", ["last", "mean", "max"])
@pytest.mark.parametrize("cell,activation", CELLS)
def test_a_classifier_in_blocks_reads_each_text_to_its_own_end(two_blocks, cell, activation, pool):
    cfg = config(cell, activation, "float32", bidirectional=True, heads=(3,), pool=pool)
    params = random_params(classifier.init_params, cfg)
    rng = np.random.default_rng(3)
    lengths = np.array([2, 9, 4, 1, 6])  # the first block's longest is shorter than the batch's
    x = rng.integers(0, cfg.vocab_size, (9, 5))
    out, _, _ = encoder_forward(params, cfg, x, init_state(cfg, 5), lengths=lengths)
    pooled, _ = classifier.pool_forward(out, lengths, cfg)
    logits = pooled @ params["head.0.W"] + params["head.0.b"]
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(classifier.predict(params, cfg, x, lengths), want, rtol=0, atol=1e-6)
    assert two_blocks == [2]


def test_a_tagger_in_blocks_labels_every_step_as_one_block_does(two_blocks):
    cfg = config("lstm", "tanh", "float64", embed=4, bidirectional=True, heads=(3, 2))
    params = random_params(tagger.init_params, cfg)
    rng = np.random.default_rng(4)
    lengths = np.array([8, 3, 5, 8, 2])
    x = rng.integers(0, cfg.vocab_size, (8, 5))
    out, _, _ = encoder_forward(params, cfg, x, init_state(cfg, 5), lengths=lengths)
    got = tagger.predict(params, cfg, x, lengths)
    assert [p.shape for p in got] == [(8, 5, 3), (8, 5, 2)]
    for k, probs in enumerate(got):
        logits = out @ params[f"head.{k}.W"] + params[f"head.{k}.b"]
        want = np.exp(logits - logits.max(axis=-1, keepdims=True))
        want /= want.sum(axis=-1, keepdims=True)
        np.testing.assert_allclose(probs, want, rtol=0, atol=1e-12)
    assert two_blocks == [2]


def test_states_of_blocks_join_in_order():
    cfg = config("lstm", "tanh", "float64", layers=2)
    state = random_state(cfg, 5, np.random.default_rng(5))
    parts = [state_rows(state, slice(0, 2)), state_rows(state, slice(2, 5))]
    joined = join_states(parts)
    for got_layer, want_layer in zip(joined, state, strict=True):
        for got, want in zip(got_layer, want_layer, strict=True):
            np.testing.assert_array_equal(got, want)


def test_blocks_cover_the_batch_in_order_each_on_one_blas_thread_and_blas_gets_its_threads_back():
    with threadpool_limits(limits=3, user_api="blas"):  # three threads on any machine, so three blocks
        assert row_blocks.blas_threads() == 3
        seen = []
        results = row_blocks.map_row_blocks(lambda rows, ws: seen.append(row_blocks.blas_threads()) or rows, 40,
                                            min_rows=1)
        assert [(r.start, r.stop) for r in results] == [(0, 13), (13, 26), (26, 40)]
        assert seen == [1, 1, 1]  # each block's products run on one BLAS thread
        assert row_blocks.blas_threads() == 3


def test_a_batch_too_thin_to_split_runs_as_one_block():
    assert row_blocks.map_row_blocks(lambda rows, ws: (rows, ws), 2 * row_blocks.MIN_ROWS - 1, {"w": 1}) == [
        (slice(0, 2 * row_blocks.MIN_ROWS - 1), {"w": 1})]
    assert row_blocks.row_blocks(7, 3) == [slice(0, 2), slice(2, 4), slice(4, 7)]


@pytest.mark.parametrize("cell,activation", [("lstm", "tanh"), ("gru", "tanh")])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fewer_ids_than_vocabulary_rows_read_the_same_projections(cell, activation, bidirectional):
    cfg = config(cell, activation, "float32", V=60, bidirectional=bidirectional, **({"heads": (2,)} if bidirectional
                                                                                      else {}))
    params = random_params(tagger.init_params if bidirectional else lm.init_params, cfg)
    x = np.random.default_rng(6).integers(0, 60, (3, 4))  # 12 ids, 60 rows: the rows are gathered
    lengths = np.array([3, 1, 2, 3]) if bidirectional else None
    want, _, _ = encoder_forward(params, cfg, x, init_state(cfg, 4), lengths=lengths)
    got, _ = encoder_infer(params, cfg, x, init_state(cfg, 4), lengths=lengths)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE["float32"])
