"""The tagger's entity-level scores (`charlm.tasks.tagging.tag_metrics.entity_scores`) checked against seqeval,
the Python port of the CoNLL scorer conlleval, in its default (conlleval) mode: random gold and predicted tag
sequences, well-formed BIO and IOB1 and ill-formed ones, must give the same precision / recall / F1, micro and per
type. charlm reads B-/I-/O labels only (no BIOES), so that is what is generated; conlleval's chunking makes IOB1
and IOB2 (BIO) one case, and also reads the ill-formed ones (an I-X after O or after another type opens a chunk).
"""

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from charlm.tasks.tagging.tag_metrics import bio_chunks, entity_scores

TYPES = ["PER", "LOC", "ORG-X"]  # a type holding "-" too: both split at the first "-" only
LABELS = ["O"] + [f"{p}-{t}" for t in TYPES for p in ("B", "I")]


@st.composite
def well_formed(draw, n):
    """A sentence of n labels built from chunks, written in IOB2 (every chunk opens with B-) or in IOB1 (a chunk
    opens with I-, or with B- only right after a chunk of the same type)."""
    iob1 = draw(st.booleans())
    labels, prev = [], None  # prev: type of the chunk just before, None after O
    while len(labels) < n:
        if draw(st.integers(0, 2)) == 0:
            labels.append("O")
            prev = None
            continue
        typ, length = draw(st.sampled_from(TYPES)), draw(st.integers(1, n - len(labels)))
        first = "I" if iob1 and prev != typ else "B"
        labels += [f"{first}-{typ}"] + [f"I-{typ}"] * (length - 1)
        prev = typ
    return labels


@st.composite
def ill_formed(draw, n):
    """Any labels at all: I- without B-, type changes inside a chunk, B- right after B-."""
    return draw(st.lists(st.sampled_from(LABELS), min_size=n, max_size=n))


@st.composite
def corrupted(draw, gold):
    """A prediction near the gold: a few labels swapped for random ones (so many chunks match, some do not)."""
    labels = list(gold)
    for _ in range(draw(st.integers(0, 3))):
        if labels:
            labels[draw(st.integers(0, len(labels) - 1))] = draw(st.sampled_from(LABELS))
    return labels


@st.composite
def gold_and_predicted(draw):
    gold, predicted = [], []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(0, 12))
        g = draw(st.one_of(well_formed(n), ill_formed(n)))
        p = draw(st.one_of(corrupted(g), well_formed(n), ill_formed(n)))
        gold.append(g)
        predicted.append(p)
    return gold, predicted


def seqeval_scores(gold, predicted):
    """seqeval's micro precision / recall / F1 and its per-type report (keyed as charlm's: "f1", not
    "f1-score"), zero divisions scored 0 as charlm does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning on 0/0
        micro = {"precision": precision_score(gold, predicted), "recall": recall_score(gold, predicted),
                 "f1": f1_score(gold, predicted)}
        report = classification_report(gold, predicted, output_dict=True)
    report = {name: {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"],
                     "support": row["support"]} for name, row in report.items()}
    return micro, report


def assert_agree(ours, theirs, what):
    for key in ("precision", "recall", "f1"):
        assert ours[key] == pytest.approx(float(theirs[key]), abs=1e-9, rel=0), f"{what} {key}"


@settings(max_examples=500, deadline=None)
@given(gold_and_predicted())
def test_entity_scores_agree_with_seqeval(sentences):
    gold, predicted = sentences
    ours = entity_scores(gold, predicted)
    micro, report = seqeval_scores(gold, predicted)

    assert_agree(ours["micro"], micro, "micro")
    assert_agree(ours["micro"], report["micro avg"], "micro avg")
    assert ours["micro"]["support"] == int(report["micro avg"]["support"])
    types = {k for k in report if not k.endswith(" avg")}
    assert set(ours["labels"]) == types
    for typ in types:
        assert_agree(ours["labels"][typ], report[typ], typ)
        assert ours["labels"][typ]["support"] == int(report[typ]["support"]), f"{typ} support"
    if types:  # with no entity anywhere seqeval's macro average is nan, charlm's 0
        assert_agree(ours["macro"], report["macro avg"], "macro")


# conlleval's input: token, gold, predicted; a blank line between sentences. Counted by hand, by conlleval's rules:
# 1. gold PER(0,2) LOC(4,6) ORG(7,8); predicted PER(0,2) LOC(4,5) ORG(7,8): 2 of 3 right.
# 2. gold MISC(1,3) (I- after O opens it) MISC(3,4) PER(5,6); predicted MISC(1,3) MISC(3,4) LOC(5,6): 2 of 3.
# 3. gold ORG(0,3); predicted ORG(0,2) LOC(2,3) (the type change opens a chunk): 0 right.
CONLL = """\
Alice B-PER B-PER
Smith I-PER I-PER
went O O
to O O
New B-LOC B-LOC
York I-LOC O
for O O
ACME B-ORG B-ORG

The O O
Red I-MISC B-MISC
Cross I-MISC I-MISC
Ball B-MISC B-MISC
for O O
Dan I-PER I-LOC

Bank B-ORG B-ORG
of I-ORG I-ORG
Paris I-ORG I-LOC
. O O
"""


def read_conlleval(text):
    gold, predicted = [], []
    for block in text.strip().split("\n\n"):
        rows = [line.split() for line in block.splitlines()]
        gold.append([r[1] for r in rows])
        predicted.append([r[2] for r in rows])
    return gold, predicted


def test_a_small_conll_file_scores_as_counted_by_hand():
    gold, predicted = read_conlleval(CONLL)
    assert sum(len(s) for s in gold) == 18
    assert bio_chunks(gold[1]) == {("MISC", 1, 3), ("MISC", 3, 4), ("PER", 5, 6)}
    assert bio_chunks(predicted[2]) == {("ORG", 0, 2), ("LOC", 2, 3)}
    s = entity_scores(gold, predicted)
    # 7 gold phrases, 8 found, 4 correct: P = 4/8, R = 4/7, F1 = 2PR / (P + R) = 8/15
    assert s["micro"] == pytest.approx({"precision": 4 / 8, "recall": 4 / 7, "f1": 8 / 15, "support": 7})
    assert s["labels"]["PER"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert s["labels"]["LOC"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert s["labels"]["ORG"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert s["labels"]["MISC"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2})
    micro, _ = seqeval_scores(gold, predicted)
    assert micro == pytest.approx({"precision": 4 / 8, "recall": 4 / 7, "f1": 8 / 15})
