"""Checkpoints: one safetensors file each, written atomically, loaded strictly, never unpickled.

Layout (through the `safetensors` package): tensors `param/<name>`, `optim/<slot>/<name>`,
`state/<layer>.<k>` (the carried TBPTT state, `STATE_ARRAYS[cell]` arrays per layer), and string
metadata holding JSON: `format`, `format_version`, `charlm_version`, `config`, `vocab` (with the
tokenizer `kind`; files without one hold a char vocabulary), `data`, `train`, `rng`, `payload_sha256`.

`charlm.store.safetensors_io` checks the container's header against the file size before reading it,
and safetensors guarantees a well-formed container (contiguous non-overlapping offsets, sizes matching
shapes). This module adds what the format lacks: a checksum of the payload, a finiteness check, and
validation of every tensor against the model config and vocabulary.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.numpy

from charlm import __version__
from charlm.atomic import write_atomic
from charlm.engine.cells import STATE_ARRAYS
from charlm.errors import CharlmError, CheckpointError, CheckpointVersionError, ConfigError
from charlm.models.config import ModelConfig
from charlm.models.networks import network
from charlm.store.safetensors_io import read_container
from charlm.text.tokenizer import Vocab, tokenizer_from_dict

FORMAT = "charlm"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A validated checkpoint. Arrays are private writable copies. `target_vocab`: an encoder–decoder's output
    vocabulary (saved in `data` under `translate`), None for the other kinds."""

    path: Path
    config: ModelConfig
    vocab: Vocab
    params: dict
    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    optim: dict = field(default_factory=dict)
    state: list | None = None
    rng: dict | None = None
    meta: dict = field(default_factory=dict)
    target_vocab: object = None


# ---------------------------------------------------------------------------------------------- save


def save_checkpoint(path, *, params, config: ModelConfig, vocab: Vocab, data: dict, train: dict | None = None,
                    optim: dict | None = None, state: list | None = None, rng: dict | None = None) -> Path:
    """Write a checkpoint atomically (`charlm.atomic.write_atomic`).

    Inputs:
    - params: {name: array} shaped as `param_shapes(config)`
    - optim: {"<slot>/<name>": array} optimiser slots, or None
    - state: carried recurrent state, one tuple of (B, H) arrays per layer, or None
    - data, train, rng: JSON-able dicts (corpus options, training position, bit generator state)
    A crash at any moment leaves either the old file or the new one, never a torn file. Non-finite
    parameters are refused so a diverged model can never replace a good one.
    """
    path = Path(path)
    tensors = {f"param/{k}": np.ascontiguousarray(v) for k, v in params.items()}
    tensors.update({f"optim/{k}": np.ascontiguousarray(v) for k, v in (optim or {}).items()})
    for layer, arrays in enumerate(state or ()):
        for k, a in enumerate(arrays):
            tensors[f"state/{layer}.{k}"] = np.ascontiguousarray(a)
    bad = [k for k, v in tensors.items() if not np.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"refusing to save non-finite values in {', '.join(bad[:3])}")
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "charlm_version": __version__,
        "config": json.dumps(config.to_dict()),
        "vocab": json.dumps(vocab.to_dict()),
        "data": json.dumps(data),
        "train": json.dumps(train or {}),
        "rng": json.dumps(rng),
    }
    metadata["payload_sha256"] = payload_digest(tensors, metadata)
    blob = safetensors.numpy.save(tensors, metadata=metadata)
    write_atomic(path, blob)
    return path


def payload_digest(tensors: dict, metadata: dict) -> str:
    """sha256 over the metadata (but the digest itself) and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key != "payload_sha256":
            digest.update(f"{key}={metadata[key]}\n".encode())
    for name in sorted(tensors):
        a = tensors[name]
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- load


def load_checkpoint(path, *, prefer: str = "best", warn=None) -> Checkpoint:
    """Load and validate a checkpoint file, or a run directory's best (or newest) checkpoint.

    prefer: "best" (sampling, scoring) or "latest" (resume) when `path` is a run directory.
    warn: called with a message when a damaged newer file is skipped in favour of an older one.
    Every failure is a CheckpointError with one readable sentence.
    """
    path = Path(path)
    if path.is_dir():
        return _load_from_run_dir(path, prefer, warn)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return _load_file(path)


# Each kind of model in words, and the commands that use it.
KIND_NAMES = {"lm": "a language model", "tagger": "a tagger", "classifier": "a classifier",
              "seq2seq": "an encoder–decoder"}
KIND_COMMANDS = {"lm": "charlm sample, score, perplexity or evaluate", "tagger": "charlm tag or evaluate",
                 "classifier": "charlm classify or evaluate", "seq2seq": "charlm translate or evaluate"}


def require_kind(ckpt: Checkpoint, kind: str) -> Checkpoint:
    """`ckpt` when it holds a model of `kind`; else a ConfigError naming the file, what it holds and the
    commands that use it."""
    if ckpt.config.kind != kind:
        held = ckpt.config.kind
        raise ConfigError(f"{ckpt.path} is {KIND_NAMES[held]}, not {KIND_NAMES[kind]}: use {KIND_COMMANDS[held]}")
    return ckpt


def load_language_model(path, *, prefer: str = "best", warn=None) -> Checkpoint:
    """`load_checkpoint`, refusing any other kind of model (a ConfigError naming the file and the commands
    it serves)."""
    return require_kind(load_checkpoint(path, prefer=prefer, warn=warn), "lm")


def _load_from_run_dir(run_dir: Path, prefer: str, warn, retries: int = 5) -> Checkpoint:
    candidates = checkpoint_files(run_dir)
    best = run_dir / "best.safetensors"
    if prefer == "best" and best.exists():
        candidates.insert(0, best)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {run_dir} (expected ckpt-*.safetensors or best.safetensors)")
    first_error = None
    for candidate in candidates:
        try:
            checkpoint = _load_file(candidate)
        except CheckpointError as exc:
            if retries and not candidate.exists():  # pruned by a trainer meanwhile: not damage, list again
                return _load_from_run_dir(run_dir, prefer, warn, retries - 1)
            first_error = first_error or exc
            if warn:
                warn(f"skipping {candidate.name}: {exc}")
            continue
        return checkpoint
    raise CheckpointError(f"no loadable checkpoint in {run_dir}: {first_error}")


def checkpoint_files(run_dir: Path) -> list[Path]:
    """Step checkpoints in a run directory, newest first."""
    found = []
    for p in Path(run_dir).glob("ckpt-*.safetensors"):
        step = p.name[len("ckpt-"):-len(".safetensors")]
        if step.isdigit():
            found.append((int(step), p))
    return [p for _, p in sorted(found, reverse=True)]


def _load_file(path: Path) -> Checkpoint:
    try:
        blob, header = read_container(path)
        tensors = safetensors.numpy.load(blob)
    except CharlmError as exc:
        if str(exc).startswith(f"{path}: "):
            raise
        raise type(exc)(f"{path}: {exc}") from None  # header checks that do not know the file name
    except Exception as exc:  # the container parser's own errors: all mean "damaged"
        raise CheckpointError(f"{path}: damaged checkpoint ({_first_line(exc)})") from None
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a charlm checkpoint")
    try:
        return _validate(path, meta, tensors)
    except CheckpointError:
        raise
    except CharlmError as exc:  # the model config's own checks (a ConfigError would mean exit 2)
        raise CheckpointError(f"{path}: invalid model config ({exc})") from None
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: invalid checkpoint metadata ({_first_line(exc)})") from None


def _validate(path: Path, meta: dict, tensors: dict) -> Checkpoint:
    written = meta.get("format_version", "")
    if not (isinstance(written, str) and written.isascii() and written.isdigit() and len(written) < 10
            and written == str(int(written))):
        raise CheckpointError(f"{path}: invalid checkpoint format version {written!r}")
    version = int(written)
    if version > FORMAT_VERSION:
        raise CheckpointVersionError(f"{path}: checkpoint format {version} is newer than this charlm "
                                     f"reads (<= {FORMAT_VERSION}); upgrade charlm")
    if version < 1:
        raise CheckpointError(f"{path}: unknown checkpoint format version {version}")
    if meta.get("payload_sha256") != payload_digest(tensors, meta):
        raise CheckpointError(f"{path}: checksum mismatch, the file is damaged")
    missing = [k for k in ("config", "vocab", "data", "train", "rng") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: invalid checkpoint metadata (lacks {', '.join(missing)})")
    config = ModelConfig.from_dict(json.loads(meta["config"]))
    vocab = tokenizer_from_dict(json.loads(meta["vocab"]))
    if vocab.size != config.vocab_size:
        raise CheckpointError(f"{path}: vocabulary has {vocab.size} entries but the model expects "
                              f"{config.vocab_size}")

    params = {k[len("param/"):]: v for k, v in tensors.items() if k.startswith("param/")}
    optim = {k[len("optim/"):]: v for k, v in tensors.items() if k.startswith("optim/")}
    state_arrays = {k[len("state/"):]: v for k, v in tensors.items() if k.startswith("state/")}
    unknown = [k for k in tensors if not k.startswith(("param/", "optim/", "state/"))]
    if unknown:
        raise CheckpointError(f"{path}: unexpected tensors {', '.join(sorted(unknown)[:3])}")

    _check_params(path, config, params)
    slots = {}
    for key, value in optim.items():
        slot, _, name = key.partition("/")
        if name not in params or value.shape != params[name].shape or value.dtype != params[name].dtype:
            raise CheckpointError(f"{path}: optimiser slot {key!r} does not match the parameters")
        slots.setdefault(slot, set()).add(name)
    for slot, names in slots.items():
        if names != set(params):  # a slot covers every parameter, or the optimiser state is incomplete
            raise CheckpointError(f"{path}: optimiser slot {slot!r} lacks {', '.join(sorted(set(params) - names))}")
    state = _state_from_arrays(path, config, state_arrays)
    for name, value in tensors.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise CheckpointError(f"{path}: tensor {name} holds non-finite values")

    data, train = json.loads(meta.get("data", "{}")), json.loads(meta.get("train", "{}"))
    rng = json.loads(meta.get("rng", "null"))
    if not (isinstance(data, dict) and isinstance(train, dict) and (rng is None or isinstance(rng, dict))):
        raise CheckpointError(f"{path}: invalid checkpoint metadata (data, train and rng must be JSON objects)")
    target_vocab = _target_vocab(path, config, data)
    return Checkpoint(
        path=path,
        config=config,
        vocab=vocab,
        params={k: np.array(v) for k, v in params.items()},
        data=data,
        train=train,
        optim={k: np.array(v) for k, v in optim.items()},
        state=state,
        rng=rng,
        meta=meta,
        target_vocab=target_vocab,
    )


def _target_vocab(path: Path, config: ModelConfig, data: dict):
    """An encoder–decoder's target vocabulary, checked against its config; None for the other kinds."""
    if config.kind != "seq2seq":
        return None
    saved = data.get("translate")
    try:
        vocab = tokenizer_from_dict(saved.get("target_vocab") if isinstance(saved, dict) else None)
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid target vocabulary ({exc})") from None
    if vocab.size != config.target_vocab:
        raise CheckpointError(f"{path}: target vocabulary has {vocab.size} entries but the model expects "
                              f"{config.target_vocab}")
    return vocab


def _check_params(path: Path, config: ModelConfig, params: dict) -> None:
    expected = network(config).param_shapes(config)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: parameters do not match the config (missing {missing}, extra {extra})")
    for name, shape in expected.items():
        if tuple(params[name].shape) != tuple(shape):
            raise CheckpointError(f"{path}: parameter {name} has shape {params[name].shape}, "
                                  f"config needs {tuple(shape)}")
        if params[name].dtype != np.dtype(config.dtype):
            raise CheckpointError(f"{path}: parameter {name} is {params[name].dtype}, config says "
                                  f"{config.dtype}")


def _state_from_arrays(path: Path, config: ModelConfig, arrays: dict) -> list | None:
    if not arrays:
        return None
    per_layer = STATE_ARRAYS[config.cell]
    expected = {f"{layer}.{k}" for layer in range(config.layers) for k in range(per_layer)}
    if set(arrays) != expected:
        raise CheckpointError(f"{path}: carried state tensors do not match a {config.layers}-layer "
                              f"{config.cell}")
    if any(a.dtype != np.dtype(config.dtype) for a in arrays.values()):
        raise CheckpointError(f"{path}: carried state is not {config.dtype}")
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != config.hidden:
        raise CheckpointError(f"{path}: carried state has inconsistent shapes {sorted(shapes)}")
    return [tuple(np.array(arrays[f"{layer}.{k}"]) for k in range(per_layer))
            for layer in range(config.layers)]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
