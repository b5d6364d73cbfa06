"""Loader fuzzing with hypothesis: whatever the bytes, `load_checkpoint` either raises CheckpointError or
returns exactly the checkpoint that was saved, and never allocates more than a small multiple of the file
(a header that claims terabytes is refused before anything is allocated). `bench/fuzz_checkpoint.py` runs the
same idea on many more cases.
"""

import json
import math
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.engine.optim import make_optimizer
from charlm.errors import CheckpointError
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state
from charlm.store.checkpoint import load_checkpoint, save_checkpoint
from charlm.text.tokenizer import Vocab

# Loading the fuzzing base checkpoint (a few KB) peaks at tens of KB of Python allocations; a loader that
# trusted a header's sizes would allocate what the header claims.
MAX_LOAD_ALLOCATION = 1 << 20
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    vocab = Vocab.build({"x": 4, "y": 2, "z": 1})
    cfg = ModelConfig(cell="gru", vocab_size=vocab.size, hidden=3, layers=1)
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    path = root / "base.safetensors"
    save_checkpoint(path, params=params, config=cfg, vocab=vocab, data={"eos_mode": "file"},
                    train={"step": 1}, optim=make_optimizer("adam", params).state_arrays(),
                    state=init_state(cfg, 2), rng=rng.bit_generator.state)
    blob = path.read_bytes()
    return root, blob, load_checkpoint(path)


def _same(a, b):
    return (a.config == b.config and a.vocab == b.vocab and a.train == b.train and a.data == b.data
            and a.rng == b.rng and a.params.keys() == b.params.keys() and a.optim.keys() == b.optim.keys()
            and all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
            and all(np.array_equal(a.optim[k], b.optim[k]) for k in a.optim))


def _load_measured(path):
    """(the loaded checkpoint or the CheckpointError, peak bytes allocated while loading)."""
    tracemalloc.start()
    try:
        result = load_checkpoint(path)
    except CheckpointError as exc:
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


def _check(root, blob, reference):
    path = root / "case.safetensors"
    path.write_bytes(blob)
    loaded, peak = _load_measured(path)
    if not isinstance(loaded, CheckpointError):  # a file that loads must mean exactly what the saved one means
        assert _same(loaded, reference), blob[:100]
    assert peak < MAX_LOAD_ALLOCATION, (peak, blob[:100])


@pytest.mark.parametrize("shape", [[2**20, 2**20], [2**62, 2**62], [2**40]])
def test_header_claiming_terabytes_is_refused_before_allocating(tmp_path, shape):
    claimed = 8 * math.prod(shape)  # offsets agree with the shape: only the file size contradicts them
    header = json.dumps({"param/embed.W": {"dtype": "F64", "shape": shape, "data_offsets": [0, claimed]}}).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    loaded, peak = _load_measured(path)
    assert isinstance(loaded, CheckpointError) and "truncated" in str(loaded)
    assert peak < MAX_LOAD_ALLOCATION, peak


@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes(base, data):
    root, _, reference = base
    _check(root, data, reference)


@FUZZ
@given(cut=st.integers(min_value=0), flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)),
                                                    max_size=4))
def test_truncations_and_bit_flips(base, cut, flips):
    root, blob, reference = base
    damaged = bytearray(blob[: cut % (len(blob) + 1)])
    for pos, bit in flips:
        if damaged:
            damaged[pos % len(damaged)] ^= 1 << bit
    _check(root, bytes(damaged), reference)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6),
                                                                                               children, max_size=4),
                           max_leaves=12)
entry = st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "F64", "I64", "U8", "BOOL", "X", ""]),
                               "shape": st.lists(st.integers(-2, 2**40), max_size=3) | json_values,
                               "data_offsets": st.lists(st.integers(-5, 2**64), min_size=0, max_size=3) | json_values})


@FUZZ
@given(entries=st.dictionaries(st.sampled_from(["param/embed.W", "param/head.W", "param/layer.0.Wx", "optim/m/x",
                                                "state/0.0", "t"]), entry | json_values, max_size=4),
       keep_metadata=st.booleans(), length_delta=st.sampled_from([0, 0, 0, 1, -1, 2**40, 2**63]),
       payload=st.binary(max_size=200))
def test_crafted_headers(base, entries, keep_metadata, length_delta, payload):
    """Headers like safetensors' attacks/: huge lengths, offsets past the end, overlaps, junk entries."""
    root, blob, reference = base
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    crafted = {"__metadata__": header["__metadata__"]} if keep_metadata else {}
    crafted.update(entries)
    text = json.dumps(crafted).encode()
    length = max(0, min(len(text) + length_delta, 2**64 - 1))
    _check(root, struct.pack("<Q", length) + text + payload, reference)


def test_interop_with_the_safetensors_package_both_ways(base, tmp_path):
    """A charlm file is plain safetensors; the same tensors and metadata saved by the package load identically."""
    import safetensors.numpy

    _, blob, reference = base
    tensors = safetensors.numpy.load(blob)
    (n,) = struct.unpack("<Q", blob[:8])
    metadata = json.loads(blob[8:8 + n])["__metadata__"]
    path = tmp_path / "by-package.safetensors"
    safetensors.numpy.save_file(dict(tensors), str(path), metadata=metadata)
    assert _same(load_checkpoint(path), reference)
