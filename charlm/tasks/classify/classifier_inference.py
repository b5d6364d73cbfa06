"""Using a classifier: the top labels of texts, each token's part in a decision, and its accuracy, macro-F1,
per-label figures and confusion matrix on labelled texts."""

import numbers
from dataclasses import dataclass

import numpy as np

from charlm.errors import ConfigError
from charlm.models import classifier
from charlm.store.checkpoint import require_kind
from charlm.tasks.label_scores import label_scores
from charlm.text.batching import pad_documents
from charlm.text.vocab import UNK

# Texts classified together (padded to the longest of each group; groups are sorted by length).
BATCH = 128


@dataclass(frozen=True)
class Classifier:
    """A loaded classifier checkpoint: its arrays and its labels (index = label id)."""

    params: dict
    cfg: object
    vocab: object
    labels: tuple[str, ...]
    max_len: int


def as_classifier(ckpt) -> Classifier:
    """The classifier a checkpoint holds; another kind of model is a ConfigError saying what to use."""
    meta = require_kind(ckpt, "classifier").data.get("classify")
    if not meta:
        raise ConfigError(f"{ckpt.path} has no labels: it was not trained by charlm train --task classify")
    return Classifier(ckpt.params, ckpt.config, ckpt.vocab, tuple(meta["labels"]), int(meta.get("max_len", 0)))


def predict_texts(params, cfg, vocab, texts, *, max_len: int = 0) -> np.ndarray:
    """Label probabilities of each text, of shape (N, K); texts longer than `max_len` (when > 0) are read up to
    it, as in training."""
    if max_len:
        texts = [t[:max_len] for t in texts]
    return predict_ids(params, cfg, [vocab.encode(t) for t in texts])


def predict_ids(params, cfg, inputs) -> np.ndarray:
    """Label probabilities (N, K) of texts given as ids (a list of N arrays), read in batches of BATCH of
    similar length."""
    probs = np.zeros((len(inputs), cfg.heads[0]))
    order = np.argsort([len(ids) for ids in inputs], kind="stable")
    for start in range(0, len(order), BATCH):
        rows = order[start:start + BATCH]
        x, lengths = pad_documents([inputs[i] for i in rows])
        probs[rows] = classifier.predict(params, cfg, x, lengths)
    return probs


def classify_texts(c: Classifier, texts, *, top_k: int = 1, explain: bool = False) -> list[dict]:
    """Per text {"text", "label", "probability", "top": [[label, probability], ...]} (top_k entries); with
    `explain`, also why it got its label: "tokens": [[token, effect], ...], per token the change in the chosen
    label's probability when that token alone is replaced by `<UNK>` (positive: the token speaks for the
    label), the tokens as the classifier reads them (characters, or words and marks; a word's implied space is
    not a token). Every variant of every text is read in the same batches. top_k larger than the labels gives
    them all."""
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k!r}")
    cut = [t[:c.max_len] for t in texts] if c.max_len else list(texts)
    inputs = [c.vocab.encode(t) for t in cut]
    probs = predict_ids(c.params, c.cfg, inputs)
    found = []
    for text, p in zip(texts, probs, strict=True):
        best = np.argsort(-p, kind="stable")[:top_k]
        found.append({"text": text, "label": c.labels[best[0]], "probability": float(p[best[0]]),
                      "top": [[c.labels[i], float(p[i])] for i in best]})
    if explain:
        for record, text, ids, effects in zip(found, cut, inputs, _effects(c, inputs, probs), strict=True):
            record["tokens"] = [[token, float(e)] for token, e in zip(_token_texts(c.vocab, text, ids), effects,
                                                                      strict=True)]
    return found


def _effects(c: Classifier, inputs, probs) -> list[np.ndarray]:
    """Per text (ids), per token: the chosen label's probability (probs (N, K)) less its probability with that
    token read as `<UNK>`."""
    variants = []
    for ids in inputs:
        for i in range(len(ids)):
            variant = ids.copy()
            variant[i] = UNK
            variants.append(variant)
    masked = predict_ids(c.params, c.cfg, variants) if variants else np.zeros((0, len(c.labels)))
    chosen = probs.argmax(axis=1)
    ends = np.cumsum([len(ids) for ids in inputs])
    return [probs[n, chosen[n]] - masked[end - len(ids):end, chosen[n]]
            for n, (ids, end) in enumerate(zip(inputs, ends, strict=True))]


def _token_texts(vocab, text: str, ids) -> list[str]:
    """The text of each id of `text`'s encoding: its characters, or its word and symbol tokens as written
    (an out-of-vocabulary word as it appears, not `<unk>`)."""
    if vocab.kind == "char":
        return list(text)
    written = vocab.tokenize(text)
    if len(written) == len(ids):
        return written
    return [vocab.token_text(int(i)) for i in ids]  # a whitespace run spelt by separators: the ids' own texts


def evaluate_texts(c: Classifier, texts, labels) -> dict:
    """A classifier's figures on labelled texts (labels: names it knows).

    Returns {"task": "classify", "loss" (nats per text), "accuracy", "macro_f1", "f1" (= macro_f1),
    "labels": per label {precision, recall, f1, support}, "confusion": {"labels", "matrix" (rows = true)},
    "most_confused": [[true, predicted, count], ...] most first}.
    """
    if not texts:
        raise ConfigError("there are no texts to evaluate")
    ids = {name: i for i, name in enumerate(c.labels)}
    y = np.array([ids[name] for name in labels])
    probs = predict_texts(c.params, c.cfg, c.vocab, texts, max_len=c.max_len)
    predicted = probs.argmax(axis=1)
    K = len(c.labels)
    matrix = np.zeros((K, K), dtype=np.int64)
    np.add.at(matrix, (y, predicted), 1)
    scores = label_scores(y, predicted, c.labels)
    off = [(int(matrix[i, j]), c.labels[i], c.labels[j]) for i in range(K) for j in range(K) if i != j and matrix[i, j]]
    return {"task": "classify", "loss": float(-np.log(np.maximum(probs[np.arange(len(y)), y], 1e-300)).mean()),
            "accuracy": float((predicted == y).mean()), "macro_f1": scores["macro"]["f1"],
            "f1": scores["macro"]["f1"], "labels": scores["labels"],
            "confusion": {"labels": list(c.labels), "matrix": matrix.tolist()},
            "most_confused": [[t, p, n] for n, t, p in sorted(off, key=lambda e: (-e[0], e[1], e[2]))]}
