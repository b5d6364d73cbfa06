"""What the explorer page shows of a tagger, a classifier or an encoder–decoder: each character's (or token's)
labels of a text, each text's label distribution, the encoder's hidden states over a text, each source's
outputs and the attention over it, and the figures on a labelled file (those of `charlm evaluate`, by the same
library functions).

Every view is a JSON-able dict; texts come from the page, already checked for size by `charlm.explore.api`.
"""

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from charlm.errors import CharlmError, ConfigError
from charlm.models.encoder import directions, encoder_activations, encoder_forward, init_state
from charlm.tasks.classify.classifier_inference import as_classifier, classify_texts, evaluate_texts
from charlm.tasks.classify.labelled_text import read_labelled
from charlm.tasks.tagging.tagged_text import CASE_LABELS, NO_MARK
from charlm.tasks.tagging.tagger_inference import (
    as_tagger,
    evaluate_docs,
    input_docs,
    labelled_docs,
    predict_docs,
    tagged_output,
)
from charlm.tasks.translate.translate_inference import as_translator, capped_note, evaluate_pairs, translate_texts

# Labels shown per character in the tagger view's tooltip (the most likely first).
TOP_LABELS = 5
# Characters of a text whose hidden states are sent (a state per unit per character).
MAX_STATE_CHARS = 1_000
# Each head's label that means "nothing to mark", which the page leaves uncoloured.
NULL_LABELS = {"case": CASE_LABELS[0], "punct": NO_MARK, "tag": "O"}
# Sources per Translate request, and characters per source: each source's attention matrix is sent, up to
# (3n + 11) x n weights for a source of n tokens.
MAX_SOURCES = 20
MAX_SOURCE_CHARS = 200


def tag_view(ckpt, text: str) -> dict:
    """The tagger's labels of each non-empty line of `text` (the tagger's documents are lines).

    Returns {"task", "heads": [{"name", "labels", "null"}], "unit": "character" or "token", "docs": [per line
    {"input": the line, "read": the text the tagger reads (truecasing lowercases it, punctuation takes the
    marks out), "output": the restored text or token/label pairs, "pieces": [{"text", "labels": {head:
    [[label, probability], ...] most likely first}}]}]}. The pieces' texts join to "read"; a piece without
    labels (a space between tokens, a character a head does not label) has fewer heads or none."""
    tagger = as_tagger(ckpt)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError("the text has no line to tag")
    docs = input_docs(tagger.task, lines, marks=tagger.marks)
    probs = predict_docs(tagger.params, tagger.cfg, tagger.vocab, [d.text for d in docs])
    found = []
    for line, doc, doc_probs in zip(lines, docs, probs, strict=True):
        if tagger.task == "tag":
            pieces = _token_pieces(doc, doc_probs[0], tagger.heads[0].labels)
        else:
            pieces = _character_pieces(doc.text, doc_probs, tagger.heads)
        output = tagged_output(tagger.task, doc, [p.argmax(axis=1) for p in doc_probs], tagger.heads)
        found.append({"input": line, "read": doc.text, "output": output, "pieces": pieces})
    heads = [{**h.to_dict(), "null": NULL_LABELS.get(h.name) if NULL_LABELS.get(h.name) in h.labels else None}
             for h in tagger.heads]
    return {"task": tagger.task, "heads": heads, "unit": "token" if tagger.task == "tag" else "character",
            "docs": found}


def _top(probs: np.ndarray, labels) -> list:
    """[[label, probability], ...] of one position's distribution (K,), most likely first."""
    order = np.argsort(-probs, kind="stable")[:TOP_LABELS]
    return [[labels[i], float(probs[i])] for i in order]


def _token_pieces(doc, probs: np.ndarray, labels) -> list:
    """A tag document's tokens (labelled at their last character, as the tagger predicts them) and the
    spaces between them."""
    pieces, at = [], 0
    for start, end in doc.tokens:
        if start > at:
            pieces.append({"text": doc.text[at:start], "labels": {}})
        pieces.append({"text": doc.text[start:end], "labels": {"tag": _top(probs[end - 1], labels)}})
        at = end
    return pieces


def _character_pieces(text: str, probs: list[np.ndarray], heads) -> list:
    """One piece per character: its case label (truecasing labels every character) and, at a word's last
    character, the mark after it (punctuation labels nothing else)."""
    pieces = []
    for i, c in enumerate(text):
        word_end = not c.isspace() and (i + 1 == len(text) or text[i + 1].isspace())
        labels = {head.name: _top(p[i], head.labels) for head, p in zip(heads, probs, strict=True)
                  if head.name != "punct" or word_end}
        pieces.append({"text": c, "labels": labels})
    return pieces


def classify_view(ckpt, text: str) -> dict:
    """Each non-empty line of `text` classified and explained: {"labels": the classifier's labels, "spaced":
    whether its tokens are words (shown apart) rather than characters, "texts": [{"text", "label",
    "probability", "top": [[label, probability], ...] every label, most likely first, "tokens": [[token,
    effect on the chosen label's probability], ...]}]} (`classify_texts` with `explain`)."""
    classifier = as_classifier(ckpt)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError("the text has no line to classify")
    found = classify_texts(classifier, lines, top_k=len(classifier.labels), explain=True)
    return {"labels": list(classifier.labels), "spaced": classifier.vocab.kind != "char", "texts": found}


def states_view(ckpt, text: str, layer: int) -> dict:
    """The encoder's hidden states (its outputs a<t>) of one layer after each character of `text`, read
    whole from the zero state as the model reads a document (a classifier's text cut at its `max_len`, and
    at MAX_STATE_CHARS).

    Returns {"chars": the characters read, "values": (n, F) nested lists, F = H units (2H bidirectional:
    the forward direction's, then the reverse's), "units": ["f0", ..., "r0", ...] the rows' names, "layer",
    "layers", "low", "high": the range to colour over ([-1, 1] for tanh-bounded outputs, else symmetric
    about 0 by the largest |value|), "cut": characters left out}."""
    cfg = ckpt.config
    if not 0 <= layer < cfg.layers:
        raise ConfigError(f"no layer {layer}: the model has {cfg.layers}")
    max_len = int((ckpt.data.get("classify") or {}).get("max_len") or 0)
    limit = min(max_len, MAX_STATE_CHARS) if max_len else MAX_STATE_CHARS
    read = text[:limit]
    if not read:
        raise ConfigError("the text is empty")
    x = np.asarray(ckpt.vocab.encode(read))[:, None]  # (n, 1)
    _, _, cache = encoder_forward(ckpt.params, cfg, x, init_state(cfg, 1), lengths=np.array([len(read)]))
    acts = encoder_activations(cfg, cache)
    parts = [acts[f"layer.{layer}.{d}a"][:, 0] for d in directions(cfg)]  # each (n, H)
    values = np.concatenate(parts, axis=1).astype(np.float64)  # (n, F)
    names = [f"{'r' if d else 'f'}{u}" for d in directions(cfg) for u in range(cfg.hidden)]
    bounded = cfg.cell != "rnn" or cfg.activation == "tanh"
    high = 1.0 if bounded else max(float(np.abs(values).max()), 1e-6)
    return {"chars": list(read), "values": np.round(values, 4).tolist(), "units": names, "layer": layer,
            "layers": cfg.layers, "low": -high, "high": high, "cut": len(text) - len(read)}


def translate_view(ckpt, text: str, *, beam: int, nbest: int) -> dict:
    """What the encoder–decoder writes for each non-empty line of `text`, as `charlm translate --beam B
    --nbest N` writes it (greedy at beam 1), with the attention over the source of each best output.

    Returns {"beam", "nbest", "attention": the model's attention ("none": no weights), "texts": [per line
    {"source", "output", "logprob", "score", "capped", "nbest": [{"output", "logprob", "score", "capped"}, ...]
    best first, "attention": (n + 1, S) nested lists, the weight of each source token (columns) as the decoder
    writes each output token and the <EOS> (rows), or None without attention, "source_tokens" (S),
    "output_tokens" (n + 1)}], "note": a line counting the outputs cut at the length cap, or None}."""
    translator = as_translator(ckpt)
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ConfigError("the text has no line to translate")
    if len(lines) > MAX_SOURCES:
        raise ConfigError(f"the text has {len(lines)} lines to translate; the limit is {MAX_SOURCES}")
    for number, line in lines:
        if len(line) > MAX_SOURCE_CHARS:
            raise ConfigError(f"line {number} has {len(line):,} characters; the limit is {MAX_SOURCE_CHARS}")
    found = translate_texts(translator, [line for _, line in lines], attention=True, beam=beam, nbest=nbest)
    for record in found:
        if record["attention"] is not None:  # float32 weights, sent as the 4-decimal numbers they were rounded to
            record["attention"] = [[round(float(w), 4) for w in row] for row in record["attention"]]
    return {"beam": beam, "nbest": nbest, "attention": translator.cfg.attention, "texts": found,
            "note": capped_note(found)}


def evaluate_view(ckpt, text: str, name: str, *, beam: int = 1) -> dict:
    """The figures `charlm evaluate` gives for the labelled file `name` whose content (read as UTF-8) is
    `text`: a tagger's (evaluate_docs), a classifier's (evaluate_texts) or an encoder–decoder's
    (evaluate_pairs, decoding with `beam`), with "kind" and "file" added.

    The content is written to a file of the server's own choosing, so the readers see the file the command
    would; their messages name `name` in its place."""
    kind = ckpt.config.kind
    if kind == "lm":
        raise ConfigError("a language model is evaluated with charlm perplexity")
    with tempfile.TemporaryDirectory(prefix="charlm-explore-") as folder:
        path = Path(folder) / "upload.txt"
        path.write_text(text, encoding="utf-8")
        try:
            found = _evaluate_file(ckpt, path, beam)
        except CharlmError as exc:
            raise type(exc)(str(exc).replace(str(path), name)) from None
    return {"kind": kind, "file": name, **found}


def _evaluate_file(ckpt, path: Path, beam: int) -> dict:
    if ckpt.config.kind == "seq2seq":
        return evaluate_pairs(as_translator(ckpt), path, beam=beam)
    if ckpt.config.kind == "tagger":
        tagger = replace(as_tagger(ckpt), encoding="utf-8")  # the page sends the file as UTF-8 text
        return evaluate_docs(tagger.params, tagger.cfg, tagger.vocab, tagger.heads, tagger.task,
                             labelled_docs(tagger, path))
    classifier = as_classifier(ckpt)
    found = read_labelled(path, "utf-8")
    for label, line in zip(found.labels, found.lines, strict=True):
        if label not in classifier.labels:
            raise ConfigError(f"{path}:{line}: label {label!r} is not one the classifier was trained on")
    return evaluate_texts(classifier, found.texts, found.labels)
