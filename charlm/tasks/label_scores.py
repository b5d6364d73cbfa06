"""Precision, recall and F1 per label with micro and macro averages, for any task that predicts labels
(taggers per character, classifiers per text). Plain JSON-able dicts."""

import numpy as np


def prf(tp: int, n_pred: int, n_gold: int) -> dict:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": int(n_gold)}


def label_scores(gold, predicted, labels, *, ignore=()) -> dict:
    """Per-label precision / recall / F1 / support over paired label ids (n,), and their micro and macro
    averages over the labels not in `ignore` (e.g. "none" for punctuation, "O" for tags); the macro average
    leaves out labels that occur in neither the gold nor the predicted labels (nothing to score).

    Returns {"labels": {name: {...}}, "micro": {...}, "macro": {...}}.
    """
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    per_label, tp_sum, pred_sum, gold_sum, counted = {}, 0, 0, 0, []
    for i, name in enumerate(labels):
        tp = int(np.sum((gold == i) & (predicted == i)))
        n_pred, n_gold = int(np.sum(predicted == i)), int(np.sum(gold == i))
        per_label[name] = prf(tp, n_pred, n_gold)
        if name not in ignore:
            tp_sum, pred_sum, gold_sum = tp_sum + tp, pred_sum + n_pred, gold_sum + n_gold
            if n_pred or n_gold:
                counted.append(per_label[name])
    macro = {key: float(np.mean([s[key] for s in counted])) if counted else 0.0
             for key in ("precision", "recall", "f1")}
    return {"labels": per_label, "micro": prf(tp_sum, pred_sum, gold_sum), "macro": {**macro, "support": gold_sum}}
