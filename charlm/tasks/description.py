"""What a checkpoint of any kind holds, as a plain JSON-able description (`charlm info`, the explorer)."""

import math

from charlm.tasks.lm.scoring import LN2
from charlm.text.tokenizer import SPECIALS

# How many of a word or symbol vocabulary's tokens `describe` lists (the most frequent: ids follow counts).
TOKENS_SHOWN = 20


def _bits(nats):
    return nats / LN2 if isinstance(nats, (int, float)) and math.isfinite(nats) else None


def _vocab_summary(vocab, data) -> dict:
    """Size, specials, document mode, encoding, the tokenizer's kind and case rule; a char vocabulary lists
    its characters, a word or symbol vocabulary its `TOKENS_SHOWN` most frequent tokens (display texts)."""
    summary = {"size": vocab.size, "specials": list(SPECIALS), "eos_mode": data.get("eos_mode"),
               "encoding": data.get("encoding"), "kind": vocab.kind, "lowercase": vocab.lowercase}
    if vocab.kind == "char":
        return {**summary, "chars": "".join(vocab.chars)}
    shown = range(len(SPECIALS), min(vocab.size, len(SPECIALS) + TOKENS_SHOWN))
    return {**summary, "tokens": [vocab.token_text(i) for i in shown]}


def describe(ckpt) -> dict:
    """What a loaded (hence verified) checkpoint holds: file, model, vocabulary and training summary.

    Validation losses are in nats per token of the checkpoint's kind (per character for a char model).
    """
    cfg, train, data = ckpt.config, ckpt.train, ckpt.data
    best_val = train.get("best_val")
    return {
        "path": str(ckpt.path),
        "format_version": int(ckpt.meta.get("format_version", 0)),
        "charlm_version": ckpt.meta.get("charlm_version"),
        "integrity": "verified (sha256 of the payload matches; shapes and values checked)",
        "payload_sha256": ckpt.meta.get("payload_sha256"),
        "kind": cfg.kind,
        "model": {**cfg.to_dict(), "parameters": int(sum(p.size for p in ckpt.params.values()))},
        "vocab": _vocab_summary(ckpt.vocab, data),
        "training": {"step": train.get("step"), "epoch": train.get("epoch"),
                     "seconds": train.get("train_seconds"), "best_val_nats": best_val,
                     "best_val_bits": _bits(best_val), "best_step": train.get("best_step"),
                     "final_val_nats": train.get("best_val_final"),
                     "final_val_mode": train.get("best_val_final_mode"),
                     "corpus": data.get("corpus_name"), "corpus_sha256": data.get("corpus_sha256")},
        "has_optimizer_state": bool(ckpt.optim),
        "task": _task(ckpt),
    }


def _task(ckpt) -> dict:
    """What the model does: "lm", or a tagger's task and heads (labels per head), or a classifier's labels and
    pooling, with the best validation F1 when training recorded one and the language model its encoder started
    from (`encoder_from`, None for a fresh one), or an encoder–decoder's attention, each
    side's tokens, its target vocabulary and its parameters by part."""
    data, cfg = ckpt.data, ckpt.config
    if cfg.kind == "classifier" and "classify" in data:
        meta = data["classify"]
        return {"task": "classify", "labels": list(meta["labels"]), "pool": cfg.pool,
                "bidirectional": cfg.bidirectional, "best_val_f1": ckpt.train.get("best_val_f1"),
                "encoder_from": data.get("encoder_from")}
    if cfg.kind == "tagger" and "tagging" in data:
        meta = data["tagging"]
        return {"task": meta["task"], "heads": meta["heads"], "marks": meta.get("marks"),
                "bidirectional": cfg.bidirectional, "best_val_f1": ckpt.train.get("best_val_f1"),
                "encoder_from": data.get("encoder_from")}
    if cfg.kind == "seq2seq" and ckpt.target_vocab is not None:
        meta = data.get("translate", {})
        return {"task": "translate", "kind": "encoder–decoder", "attention": cfg.attention,
                "bidirectional": cfg.bidirectional, "source_tokens": meta.get("source_tokens", ckpt.vocab.kind),
                "target_tokens": meta.get("target_tokens", ckpt.target_vocab.kind), "max_len": meta.get("max_len"),
                "target_vocab": _vocab_summary(ckpt.target_vocab, data), "parameters": _seq2seq_parts(ckpt.params)}
    return {"task": "lm"}


# An encoder–decoder's parameters by part, by the prefix of their names (`charlm.models.seq2seq.param_shapes`).
SEQ2SEQ_PARTS = (("decoder", "dec."), ("bridge", "bridge."), ("attention", "att."), ("output", "head."),
                 ("encoder", ""))


def _seq2seq_parts(params: dict) -> dict:
    """Parameter counts of the encoder, the bridge, the decoder, the attention and the output layer."""
    counts = dict.fromkeys(["encoder", "bridge", "decoder", "attention", "output"], 0)
    for name, array in params.items():
        part = next(part for part, prefix in SEQ2SEQ_PARTS if name.startswith(prefix))
        counts[part] += int(array.size)
    return counts
