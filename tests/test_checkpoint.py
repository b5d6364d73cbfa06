"""Checkpoints: exact round trip, atomic writes under injected faults, strict loading of damaged files."""

import json
import os
import struct

import numpy as np
import pytest
import safetensors.numpy

from charlm import atomic as atomic_module
from charlm.engine.cells import STATE_ARRAYS
from charlm.engine.optim import make_optimizer
from charlm.errors import CheckpointError, CheckpointVersionError
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state
from charlm.store.checkpoint import load_checkpoint, payload_digest, save_checkpoint
from charlm.text.tokenizer import Vocab


def _small(cell="lstm", layers=2):
    vocab = Vocab.build({"a": 5, "b": 3, "c": 1, "\n": 2})
    cfg = ModelConfig(cell=cell, vocab_size=vocab.size, hidden=4, layers=layers)
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    return cfg, vocab, params, rng


def _save(path, *, cell="lstm", layers=2, **overrides):
    cfg, vocab, params, rng = _small(cell, layers)
    opt = make_optimizer("adam", params)
    state = [tuple(a + 0.5 for a in layer) for layer in init_state(cfg, 3)]
    kwargs = dict(params=params, config=cfg, vocab=vocab, data={"eos_mode": "file", "corpus_sha256": "ab"},
                  train={"step": 7, "cursor": {"epoch": 0}}, optim=opt.state_arrays(), state=state,
                  rng=rng.bit_generator.state)
    kwargs.update(overrides)
    save_checkpoint(path, **kwargs)
    return kwargs


@pytest.mark.parametrize("cell", ["rnn", "gru", "gru-simple", "lstm"])
def test_round_trip_is_exact(tmp_path, cell):
    path = tmp_path / "ckpt-00000007.safetensors"
    saved = _save(path, cell=cell)
    loaded = load_checkpoint(path)
    assert loaded.config == saved["config"]
    assert loaded.vocab.to_dict() == saved["vocab"].to_dict()
    assert loaded.train == saved["train"] and loaded.data == saved["data"]
    assert loaded.rng == saved["rng"]
    for name, value in saved["params"].items():
        assert np.array_equal(loaded.params[name], value) and loaded.params[name].dtype == value.dtype
        loaded.params[name] += 1  # loaded arrays must be writable copies (optimisers update in place)
    for name, value in saved["optim"].items():
        assert np.array_equal(loaded.optim[name], value)
    assert len(loaded.state) == len(saved["state"])
    for got, want in zip(loaded.state, saved["state"], strict=True):
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_file_is_plain_safetensors(tmp_path):
    path = tmp_path / "c.safetensors"
    saved = _save(path)
    tensors = safetensors.numpy.load_file(str(path))
    assert set(saved["params"]) == {k[len("param/"):] for k in tensors if k.startswith("param/")}


def test_refuses_to_save_non_finite_weights(tmp_path):
    cfg, vocab, params, _ = _small()
    name = next(iter(params))
    params[name].flat[0] = np.nan
    path = tmp_path / "c.safetensors"
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(path, params=params, config=cfg, vocab=vocab, data={})
    assert not path.exists()


@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace"])
def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "best.safetensors"
    _save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if fail_at == "write":
        real_fdopen = os.fdopen

        class FailingFile:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                boom()

        monkeypatch.setattr(atomic_module.os, "fdopen", lambda fd, mode: FailingFile(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(atomic_module.os, fail_at, boom)
    with pytest.raises(OSError, match="No space"):
        _save(path, train={"step": 99})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).train["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]


def test_every_truncation_is_rejected(tmp_path):
    path = tmp_path / "c.safetensors"
    _save(path, layers=1)
    blob = path.read_bytes()
    damaged = tmp_path / "d.safetensors"
    step = max(1, len(blob) // 1500)
    for cut in list(range(0, len(blob), step)) + [len(blob) - 1]:
        damaged.write_bytes(blob[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(damaged)


def test_byte_flips_are_rejected(tmp_path):
    path = tmp_path / "c.safetensors"
    _save(path, layers=1)
    blob = bytearray(path.read_bytes())
    damaged = tmp_path / "d.safetensors"
    rng = np.random.default_rng(5)
    for offset in rng.choice(len(blob), size=300, replace=False):
        flipped = bytearray(blob)
        flipped[offset] ^= 1 << int(rng.integers(8))
        damaged.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError):
            load_checkpoint(damaged)


def _rewrite_metadata(path, **changes):
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header["__metadata__"].update(changes)
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + blob[8 + n:])


def _rewrite_metadata_signed(path, **changes):
    """Change metadata and recompute the payload checksum, as a writer of that content would have."""
    tensors = safetensors.numpy.load_file(str(path))
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    meta = {**json.loads(blob[8:8 + n])["__metadata__"], **changes}
    meta["payload_sha256"] = payload_digest(tensors, meta)
    safetensors.numpy.save_file(tensors, str(path), metadata=meta)


def test_checkpoint_whose_vocabulary_has_no_kind_loads_as_a_char_vocabulary(tmp_path):
    path = tmp_path / "c.safetensors"
    saved = _save(path)
    assert json.loads(load_checkpoint(path).meta["vocab"])["kind"] == "char"
    older = {"specials": ["<EOS>", "<UNK>"], "chars": list(saved["vocab"].chars)}
    _rewrite_metadata_signed(path, vocab=json.dumps(older))
    loaded = load_checkpoint(path)
    assert loaded.vocab == saved["vocab"] and loaded.vocab.kind == "char"


def test_unknown_tokenizer_kind_is_one_checkpoint_error_line(tmp_path):
    path = tmp_path / "c.safetensors"
    _save(path)
    _rewrite_metadata_signed(path, vocab=json.dumps({"kind": "bpe", "specials": ["<EOS>", "<UNK>"],
                                                     "merges": ["t h"]}))
    with pytest.raises(CheckpointError, match="unknown tokenizer kind 'bpe'") as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize(("cell", "n"), [(c, k + 1) for c, k in STATE_ARRAYS.items()]
                         + [(c, k - 1) for c, k in STATE_ARRAYS.items() if k > 1])
def test_carried_state_must_have_the_cells_number_of_arrays(tmp_path, cell, n):
    cfg, vocab, params, _ = _small(cell, layers=2)
    state = [tuple(np.zeros((3, cfg.hidden), cfg.dtype) for _ in range(n)) for _ in range(cfg.layers)]
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, params=params, config=cfg, vocab=vocab, data={}, state=state)
    with pytest.raises(CheckpointError, match="carried state tensors do not match"):
        load_checkpoint(path)


def test_newer_format_version_says_upgrade(tmp_path):
    path = tmp_path / "c.safetensors"
    _save(path)
    _rewrite_metadata(path, format_version="99")
    with pytest.raises(CheckpointVersionError, match="upgrade charlm"):
        load_checkpoint(path)


def test_tampered_metadata_fails_checksum(tmp_path):
    path = tmp_path / "c.safetensors"
    _save(path)
    _rewrite_metadata(path, train=json.dumps({"step": 8}))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


# fixed ids: the random bytes would otherwise make a new test id each collection (pytest-xdist needs them equal)
@pytest.mark.parametrize("content", [
    b"", b"hello world\n", b"\x80\x04\x95pickle", os.urandom(64), b"PK\x03\x04npz-ish" + bytes(40),
    struct.pack("<Q", 2**40) + b"{}", struct.pack("<Q", 2) + b"[]",
], ids=["empty", "text", "pickle", "random", "zip", "huge-header", "list-header"])
def test_foreign_files_are_not_charlm_checkpoints(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_other_safetensors_file_is_not_a_charlm_checkpoint(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(3, np.float32)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a charlm checkpoint"):
        load_checkpoint(path)


def test_shape_that_contradicts_config_is_rejected(tmp_path):
    cfg, vocab, params, _ = _small()
    name = next(k for k, v in params.items() if v.ndim == 2)
    params[name] = np.zeros((params[name].shape[0] + 1, params[name].shape[1]), params[name].dtype)
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, params=params, config=cfg, vocab=vocab, data={})
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path)


def test_run_dir_prefers_best_and_falls_back_past_damaged_files(tmp_path):
    _save(tmp_path / "ckpt-00000010.safetensors", train={"step": 10})
    _save(tmp_path / "ckpt-00000020.safetensors", train={"step": 20})
    _save(tmp_path / "best.safetensors", train={"step": 15})
    assert load_checkpoint(tmp_path).train["step"] == 15
    assert load_checkpoint(tmp_path, prefer="latest").train["step"] == 20
    newest = tmp_path / "ckpt-00000020.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    warnings = []
    assert load_checkpoint(tmp_path, prefer="latest", warn=warnings.append).train["step"] == 10
    assert "ckpt-00000020" in warnings[0]


def test_empty_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
