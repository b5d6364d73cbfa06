"""Using a tagger: restore texts (truecase, punctuate) or tag sentences, and score it on labelled documents
with the task's headline F1 (word-level over not-all-lowercase words for truecasing, micro-F1 over marks for
punctuation, entity-level micro-F1 for BIO tags)."""

from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError, ConfigError
from charlm.models import tagger
from charlm.store.checkpoint import require_kind
from charlm.tasks.label_scores import label_scores
from charlm.tasks.tagging.tag_metrics import entity_scores, is_bio, truecase_word_scores
from charlm.tasks.tagging.tagged_text import NO_LABEL, Head, TaggedDoc, make_doc, read_conll, restore, tag_doc
from charlm.text.batching import batches_by_length
from charlm.text.corpus import read_text, split_documents

# Documents tagged together (padded to the longest of each group; groups are sorted by length).
BATCH = 64


@dataclass(frozen=True)
class Tagger:
    """A loaded tagger checkpoint: its arrays and what it was trained to do."""

    params: dict
    cfg: object
    vocab: object
    task: str
    heads: tuple[Head, ...]
    marks: str
    eos_mode: str
    encoding: str


def as_tagger(ckpt) -> Tagger:
    """The tagger a checkpoint holds; a language model is a ConfigError that says what to use instead."""
    tagging = require_kind(ckpt, "tagger").data.get("tagging")
    if not tagging:
        raise ConfigError(f"{ckpt.path} has no labels: it was not trained by charlm train --task "
                          f"truecase|punctuate|tag")
    heads = tuple(Head(h["name"], tuple(h["labels"])) for h in tagging["heads"])
    return Tagger(ckpt.params, ckpt.config, ckpt.vocab, tagging["task"], heads, tagging.get("marks", ""),
                  ckpt.data.get("eos_mode") or "lines", ckpt.data.get("encoding") or "utf-8")


def labelled_docs(t: Tagger, path) -> list[TaggedDoc]:
    """The labelled documents of a file for the tagger's task: a CoNLL-style file for `tag` (labels the
    tagger does not know are a ConfigError naming file:line), else text read as the tagger's corpus was."""
    if t.task == "tag":
        labels = {lab: i for i, lab in enumerate(t.heads[0].labels)}
        sentences = read_conll(path, t.encoding)
        for s in sentences:
            unknown = sorted(set(s.labels) - set(labels))
            if unknown:
                raise ConfigError(f"{path}:{s.line}: labels the tagger was not trained on: {', '.join(unknown)}")
        return [tag_doc(s.tokens, s.labels, labels) for s in sentences]
    documents = [d for d in split_documents(read_text(path, t.encoding), t.eos_mode) if d.strip()]
    if not documents:
        raise CharlmError(f"{path}: no documents with text in it")
    return [make_doc(t.task, d, t.marks) for d in documents]


def predict_docs(params, cfg, vocab, texts) -> list[list[np.ndarray]]:
    """Each text's label probabilities per head, [doc][head] of shape (len(text), K), read whole."""
    found = [None] * len(texts)
    for rows, x, lengths in batches_by_length(vocab, texts, BATCH):
        probs = tagger.predict(params, cfg, x, lengths)
        for b, i in enumerate(rows):
            found[i] = [p[:len(texts[i]), b] for p in probs]
    return found


def _word_case(word: str) -> str:
    if word.islower() or not any(c.isalpha() for c in word):
        return "lower"
    if word.isupper() and len([c for c in word if c.isalpha()]) > 1:
        return "UPPER"
    return "Title" if word[:1].isupper() and word[1:] == word[1:].lower() else "mixed"


def _spans(text: str):
    """(start, end) of each whitespace-separated word."""
    spans, start = [], None
    for i, c in enumerate(text + " "):
        if c.isspace():
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    return spans


def input_docs(task: str, texts, *, marks: str = "", tokens=None) -> list[TaggedDoc]:
    """The texts in the tagger's input form: truecase / punctuate lowercase them and take the chosen marks out
    where they close a word; tag splits them into whitespace-separated tokens (`tokens`: their spans, when a
    text is already a joined sentence)."""
    if task != "tag":
        return [make_doc(task, t, marks) for t in texts]
    if tokens is None:
        return [tag_doc(t.split()) for t in texts]
    return [TaggedDoc(t, (np.full(len(t), NO_LABEL),), spans) for t, spans in zip(texts, tokens, strict=True)]


def tagged_output(task: str, doc: TaggedDoc, predicted: list[np.ndarray], heads) -> str:
    """What `charlm tag` prints for a document given its predicted label ids (per head, (len(text),)): the
    restored text, or for tag the `token/label` pairs (a token's label is predicted at its last character)."""
    if task != "tag":
        return restore(task, doc.text, predicted, heads)
    spans = doc.tokens or _spans(doc.text)
    return " ".join(f"{doc.text[start:end]}/{heads[0].labels[int(predicted[0][end - 1])]}" for start, end in spans)


def tag_docs(params, cfg, vocab, heads, task: str, texts, *, marks: str = "", tokens=None) -> list[dict]:
    """Apply a tagger to raw texts.

    truecase / punctuate: each text is first brought to the tagger's input form (lowercased; the chosen marks
    removed where they close a word), then restored. tag: each text's whitespace-separated tokens are tagged
    (`tokens`: their spans, when the text is already a joined sentence).
    Returns per text {"input", "output", "tokens": [{"token", "restored", <head>: label,
    <head>_probability: p}]}: for case the word's casing (lower, Title, UPPER, mixed) with the product of its
    characters' label probabilities; for punct the mark after the word (or "none"), for tag the label, each
    with its probability.
    """
    docs = input_docs(task, texts, marks=marks, tokens=tokens)
    probs = predict_docs(params, cfg, vocab, [d.text for d in docs])
    results = []
    for text, doc, doc_probs in zip(texts, docs, probs, strict=True):
        predicted = [p.argmax(axis=1) for p in doc_probs]
        spans = list(doc.tokens) if doc.tokens else _spans(doc.text)
        output = tagged_output(task, doc, predicted, heads)
        records = []
        if task == "tag":
            names = heads[0].labels
            for start, end in spans:
                label = int(predicted[0][end - 1])
                records.append({"token": doc.text[start:end], "restored": doc.text[start:end], "tag": names[label],
                                "tag_probability": float(doc_probs[0][end - 1, label])})
        else:
            for (start, end), restored in zip(spans, output.split(), strict=True):
                record = {"token": doc.text[start:end], "restored": restored}
                for head, p, y in zip(heads, doc_probs, predicted, strict=True):
                    if head.name == "case":
                        record["case"] = _word_case(restored)
                        record["case_probability"] = float(np.prod(p[np.arange(start, end), y[start:end]]))
                    else:
                        record["punct"] = head.labels[int(y[end - 1])]
                        record["punct_probability"] = float(p[end - 1, y[end - 1]])
                records.append(record)
        results.append({"input": text, "output": output, "tokens": records})
    return results


def evaluate_docs(params, cfg, vocab, heads, task: str, docs: list[TaggedDoc]) -> dict:
    """A tagger's figures on labelled documents.

    Returns {"task", "loss" (nats per label, summed over heads), "f1", "precision", "recall" (the headline:
    for truecase+punctuate the mean of both tasks'), "heads": {name: {"f1", "precision", "recall", "labels":
    per label {precision, recall, f1, support}, ...}}}.
    """
    if not docs:
        raise ConfigError("there are no documents to evaluate")
    probs = predict_docs(params, cfg, vocab, [d.text for d in docs])
    loss, per_head = 0.0, {}
    for k, head in enumerate(heads):
        gold = np.concatenate([d.labels[k] for d in docs])
        p = np.concatenate([dp[k] for dp in probs])
        labelled = gold != NO_LABEL
        if not labelled.any():
            continue
        g, predicted = gold[labelled], p[labelled].argmax(axis=1)
        loss += float(-np.log(np.maximum(p[labelled][np.arange(len(g)), g], 1e-300)).mean())
        if head.name == "case":
            gold_texts = [restore("truecase", d.text, [d.labels[k]], (head,)) for d in docs]
            predicted_texts = [restore("truecase", d.text, [dp[k].argmax(axis=1)], (head,))
                               for d, dp in zip(docs, probs, strict=True)]
            headline = truecase_word_scores(gold_texts, predicted_texts)
            scores = label_scores(g, predicted, head.labels, ignore=("lower",))
        elif head.name == "punct":
            scores = label_scores(g, predicted, head.labels, ignore=(head.labels[0],))
            headline = scores["micro"]
        elif is_bio(head.labels):
            names = np.array(head.labels, dtype=object)
            at_tokens = [d.labels[k] != NO_LABEL for d in docs]  # each token's last character
            gold_sentences = [list(names[d.labels[k][m]]) for d, m in zip(docs, at_tokens, strict=True)]
            predicted_sentences = [list(names[dp[k].argmax(axis=1)[m]])
                                   for dp, m in zip(probs, at_tokens, strict=True)]
            scores = entity_scores(gold_sentences, predicted_sentences)
            headline = scores["micro"]
        else:
            scores = label_scores(g, predicted, head.labels, ignore=("O",))
            headline = scores["micro"]
        per_head[head.name] = {**{key: headline[key] for key in ("precision", "recall", "f1")},
                               "labels": scores["labels"], "micro": scores["micro"], "macro": scores["macro"],
                               "accuracy": float((predicted == g).mean())}
    figures = {key: float(np.mean([h[key] for h in per_head.values()])) for key in ("precision", "recall", "f1")}
    return {"task": task, "loss": loss, **figures, "heads": per_head}
