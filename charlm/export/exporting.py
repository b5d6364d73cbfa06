"""What `charlm export` calls: load a checkpoint, build its ONNX graph (`charlm.export.onnx_graph`), an
encoder–decoder's two ONNX graphs (`charlm.export.onnx_seq2seq`) or a PyTorch state dict
(`charlm.export.torch_state`), write the files atomically and say what was written.

Every file carries the same string metadata (the ONNX model's `metadata_props`, the safetensors header's
`__metadata__`), each value JSON but `charlm.kind` and `charlm.part`:
- `charlm.kind`: "lm", "tagger", "classifier" or "seq2seq"
- `charlm.vocab`: the tokens in id order (`<EOS>`, `<UNK>`, then the vocabulary's characters, words or
  symbols); `charlm.tokenizer`: {"kind": "char" | "word" | "symbols", "lowercase": bool}
- `charlm.labels`: a classifier's labels in id order; a tagger's heads in order, [{"name", "labels"}, ...]
- an encoder–decoder's `charlm.target_vocab` and `charlm.target_tokenizer`, the same for its outputs, and
  `charlm.part`, "encoder" or "decoder"
- `charlm.config`: the ModelConfig dict (its `dtype` is the checkpoint's; the exported weights are float32)
The PyTorch file adds `charlm.module` (the module's constructor arguments) and `format` "pt".
"""

import json
from pathlib import Path

import safetensors.numpy

from charlm.atomic import write_atomic
from charlm.errors import CharlmError, ConfigError
from charlm.export import onnx_graph, onnx_seq2seq, torch_state
from charlm.store.checkpoint import KIND_NAMES, Checkpoint, load_checkpoint
from charlm.tasks.classify.classifier_inference import as_classifier
from charlm.tasks.tagging.tagger_inference import as_tagger
from charlm.text.vocab import SPECIALS

FORMATS = ("onnx", "torch")
TORCH_KINDS = ("lm", "tagger", "classifier")
SEQ2SEQ_PARTS = {"encoder": onnx_seq2seq.build_encoder, "decoder": onnx_seq2seq.build_decoder}


def export_model(source, out, *, fmt: str = "onnx", warn=None) -> dict:
    """Write the model of `source` (a run directory's best checkpoint, or a checkpoint file) to `out`.

    Inputs: fmt, one of FORMATS; warn, called with a message when a damaged checkpoint of a run is skipped.
    Returns what was written: {"path", "format", "bytes", "kind", "cell", "source"} and, for onnx, the graph's
    "inputs" and "outputs" (each {"name", "dtype", "shape", "optional"}), for torch the "module" arguments and
    the "tensors" ({name: shape}). An encoder–decoder (onnx only) writes two files named from `out`
    (`seq2seq_paths`) and adds "files", [{"part", "path", "bytes", "inputs", "outputs"}] for the encoder then
    the decoder; its "path", "bytes", "inputs" and "outputs" are the encoder's.
    Every refusal is a CharlmError with one sentence, raised before anything is written.
    """
    onnx = _check_destination(out, fmt)  # before the checkpoint is read: a bad flag costs no loading
    return _export(load_checkpoint(source, warn=warn), Path(out), fmt, onnx)


def export_checkpoint(ckpt: Checkpoint, out, *, fmt: str = "onnx") -> dict:
    """Write the model of a loaded checkpoint to `out`, as `export_model` does (the Python API's
    `Model.export`); returns what was written."""
    return _export(ckpt, Path(out), fmt, _check_destination(out, fmt))


def _export(ckpt: Checkpoint, out: Path, fmt: str, onnx) -> dict:
    """`export_checkpoint` once its destination is checked; onnx: the package for --format onnx, else None."""
    cfg = ckpt.config
    if fmt == "torch" and cfg.kind not in TORCH_KINDS:
        raise CharlmError(f"{ckpt.path} is {KIND_NAMES[cfg.kind]}: --format torch covers language models, taggers "
                          f"and classifiers (export it with --format onnx, as an encoder and a decoder graph)")
    targets = list(seq2seq_paths(out).values()) if cfg.kind == "seq2seq" else [out]
    for target in targets:
        if target.exists() and Path(ckpt.path).exists() and target.samefile(ckpt.path):
            raise ConfigError(f"{target} is the checkpoint being exported: write the export to another file")
    metadata = model_metadata(ckpt)
    if cfg.kind == "seq2seq":
        return _export_seq2seq(onnx, ckpt, out, metadata)
    if fmt == "onnx":
        model = onnx_graph.build_model(onnx, ckpt.params, cfg, metadata)
        write_atomic(out, model.SerializeToString())
        described = _signature(onnx, model)
    else:
        tensors = torch_state.state_dict(ckpt.params, cfg)
        module = torch_state.module_arguments(cfg)
        header = {"format": "pt", **metadata, "charlm.module": json.dumps(module)}
        write_atomic(out, safetensors.numpy.save(tensors, metadata=header))
        described = {"module": module, "tensors": {name: list(t.shape) for name, t in tensors.items()}}
    return {"path": str(out), "format": fmt, "bytes": out.stat().st_size, "kind": cfg.kind, "cell": cfg.cell,
            "source": str(ckpt.path), **described}


def seq2seq_paths(out) -> dict[str, Path]:
    """Where an encoder–decoder exported to `out` goes: {"encoder": out with `.encoder` before its suffix,
    "decoder": with `.decoder`} (model.onnx -> model.encoder.onnx, model.decoder.onnx)."""
    out = Path(out)
    return {part: out.with_name(f"{out.stem}.{part}{out.suffix}") for part in SEQ2SEQ_PARTS}


def _export_seq2seq(onnx, ckpt: Checkpoint, out: Path, metadata: dict[str, str]) -> dict:
    """Build both graphs of an encoder–decoder, then write them; returns what was written (see export_model)."""
    paths = seq2seq_paths(out)
    models = {part: build(onnx, ckpt.params, ckpt.config, {**metadata, "charlm.part": part})
              for part, build in SEQ2SEQ_PARTS.items()}
    for part, model in models.items():
        write_atomic(paths[part], model.SerializeToString())
    files = [{"part": part, "path": str(paths[part]), "bytes": paths[part].stat().st_size,
              **_signature(onnx, model)} for part, model in models.items()]
    encoder = files[0]
    return {"path": encoder["path"], "format": "onnx", "bytes": encoder["bytes"], "kind": ckpt.config.kind,
            "cell": ckpt.config.cell, "source": str(ckpt.path), "inputs": encoder["inputs"],
            "outputs": encoder["outputs"], "files": files}


def _check_destination(out, fmt: str):
    """A known format and a directory to write into, checked before anything is loaded or written; returns the
    onnx package for --format onnx (None for torch)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise CharlmError(f"cannot write {out}: its directory {out.parent} does not exist")
    return _import_onnx() if fmt == "onnx" else None


def model_metadata(ckpt: Checkpoint) -> dict[str, str]:
    """The string metadata both formats carry (see the module docstring)."""
    vocab = ckpt.vocab
    metadata = {
        "charlm.kind": ckpt.config.kind,
        "charlm.vocab": json.dumps([*SPECIALS, *vocab.tokens]),
        "charlm.tokenizer": json.dumps({"kind": vocab.kind, "lowercase": vocab.lowercase}),
        "charlm.config": json.dumps(ckpt.config.to_dict()),
    }
    if ckpt.config.kind == "seq2seq":
        target = ckpt.target_vocab
        metadata["charlm.target_vocab"] = json.dumps([*SPECIALS, *target.tokens])
        metadata["charlm.target_tokenizer"] = json.dumps({"kind": target.kind, "lowercase": target.lowercase})
    elif ckpt.config.kind == "tagger":
        heads = as_tagger(ckpt).heads
        metadata["charlm.labels"] = json.dumps([{"name": h.name, "labels": list(h.labels)} for h in heads])
    elif ckpt.config.kind == "classifier":
        metadata["charlm.labels"] = json.dumps(list(as_classifier(ckpt).labels))
    return metadata


def _import_onnx():
    """The onnx package, an optional dependency (the `export` extra)."""
    try:
        import onnx
    except ImportError:
        raise CharlmError("--format onnx needs the onnx package: pip install 'charlm[export]'") from None
    return onnx


def _signature(onnx, model) -> dict:
    """{"inputs", "outputs"} of a graph, each described by `_describe` (an input with a default is optional)."""
    optional = {tensor.name for tensor in model.graph.initializer}
    return {"inputs": [_describe(onnx, v, v.name in optional) for v in model.graph.input],
            "outputs": [_describe(onnx, v, False) for v in model.graph.output]}


def _describe(onnx, value, optional: bool) -> dict:
    """A graph input's or output's name, dtype, shape (a dimension's size, or its name when dynamic) and
    whether a caller may leave it out."""
    tensor = value.type.tensor_type
    shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "shape": shape, "optional": optional}
