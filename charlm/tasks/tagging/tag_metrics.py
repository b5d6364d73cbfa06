"""How well a tagger did beyond per-label scores (`charlm.tasks.label_scores`): truecasing's word-level
figures and entity-level scores for BIO tags, as conlleval counts them. Plain JSON-able dicts.
"""

import numpy as np

from charlm.tasks.label_scores import prf


def _not_all_lower(word: str) -> bool:
    return word != word.lower()


def truecase_word_scores(gold_texts, predicted_texts) -> dict:
    """Word-level precision / recall / F1 over the words that are not all lowercase (how truecasing papers
    report it): a predicted word counts when it is not all lowercase and equals the gold word; recall is over
    the gold words that are not all lowercase. Words are whitespace-separated; both texts hold the same
    letters up to case, so the words pair up."""
    tp = n_pred = n_gold = 0
    for gold, predicted in zip(gold_texts, predicted_texts, strict=True):
        for g, p in zip(gold.split(), predicted.split(), strict=True):
            n_gold += _not_all_lower(g)
            n_pred += _not_all_lower(p)
            tp += _not_all_lower(p) and p == g
    return prf(tp, n_pred, n_gold)


def bio_chunks(labels) -> set[tuple[str, int, int]]:
    """(type, start, end) of every entity in a BIO (or IOB1) label sequence: a chunk starts at B-X, or at I-X
    after anything but B-X / I-X of the same type (conlleval's rule), and runs while I-X follows."""
    chunks, kind, start = set(), None, 0
    for i, label in enumerate([*labels, "O"]):
        prefix, _, typ = label.partition("-") if label not in ("O", "") else ("O", "", "")
        continues = prefix == "I" and typ == kind
        if kind is not None and not continues:
            chunks.add((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and not continues):
            kind, start = typ, i
    return chunks


def is_bio(labels) -> bool:
    """Whether a label set is BIO-style (every label "O" or of the form B-X / I-X)."""
    return all(lab == "O" or (len(lab) > 2 and lab[:2] in ("B-", "I-")) for lab in labels)


def entity_scores(gold_sentences, predicted_sentences) -> dict:
    """Entity-level precision / recall / F1 of BIO sequences (exact chunk matches), per type and micro.

    Returns {"labels": {type: {...}}, "micro": {...}, "macro": {...}}.
    """
    gold_all, pred_all = set(), set()
    for k, (gold, predicted) in enumerate(zip(gold_sentences, predicted_sentences, strict=True)):
        gold_all |= {(k, *c) for c in bio_chunks(gold)}
        pred_all |= {(k, *c) for c in bio_chunks(predicted)}
    types = sorted({c[1] for c in gold_all | pred_all})
    per_type = {}
    for typ in types:
        g = {c for c in gold_all if c[1] == typ}
        p = {c for c in pred_all if c[1] == typ}
        per_type[typ] = prf(len(g & p), len(p), len(g))
    macro = {key: float(np.mean([s[key] for s in per_type.values()])) if per_type else 0.0
             for key in ("precision", "recall", "f1")}
    return {"labels": per_type, "micro": prf(len(gold_all & pred_all), len(pred_all), len(gold_all)),
            "macro": {**macro, "support": len(gold_all)}}
