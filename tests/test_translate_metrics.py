"""The figures `charlm evaluate` gives an encoder–decoder, against hand counts and sacrebleu itself: the token
edit distance, exact match and WER over several references, TER summed over the file, BLEU and chrF."""

from collections import Counter

import numpy as np
import pytest
import sacrebleu
from hypothesis import given
from hypothesis import strategies as st

from charlm.models import seq2seq
from charlm.models.config import ModelConfig
from charlm.tasks.translate import translate_inference
from charlm.tasks.translate.decoding import Output, Translator
from charlm.tasks.translate.translate_inference import evaluate_pairs, token_edits
from charlm.text.symbols import SymbolVocab
from charlm.text.tokenizer import Vocab


def levenshtein(a, b) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


@given(st.lists(st.sampled_from("abc"), max_size=8), st.lists(st.sampled_from("abc"), max_size=8))
def test_token_edits_is_the_levenshtein_distance(a, b):
    assert token_edits(a, b) == levenshtein(a, b)


def test_evaluate_counts_against_every_reference(tmp_path, monkeypatch):
    """Three sources, one with two pronunciations; the decoder's outputs are fixed so every figure can be
    counted by hand."""
    source_vocab = Vocab.build(Counter("catreadhi"))
    target_vocab = SymbolVocab.build(Counter("K AE1 T R EH1 D IY1 HH AY1".split()))
    cfg = ModelConfig(cell="gru", vocab_size=source_vocab.size, hidden=4, target_vocab=target_vocab.size,
                      attention="dot")
    translator = Translator(seq2seq.init_params(cfg, np.random.default_rng(0)), cfg, source_vocab, target_vocab)
    path = tmp_path / "pairs.tsv"
    path.write_text("cat\tK AE1 T\nread\tR EH1 D\nread\tR IY1 D\nhi\tHH AY1\n", encoding="utf-8")
    written = {"cat": "K AE1 T", "read": "R IY1 D", "hi": "HH IY1 AY1"}  # right, the second reference, 1 edit

    def fixed(translator, ids, *, beam, nbest=1):
        texts = ["".join(source_vocab.decode(i)) for i in ids]
        return [[Output(target_vocab.encode(written[t]), written[t], -1.0, -0.25, False)] for t in texts]

    monkeypatch.setattr(translate_inference, "beam_search", fixed)
    found = evaluate_pairs(translator, path)
    assert (found["n"], found["pairs"]) == (3, 4)
    assert found["exact_match"] == pytest.approx(2 / 3) and found["wer"] == pytest.approx(1 / 3)
    assert found["ter"] == pytest.approx((0 + 0 + 1) / (3 + 3 + 2))  # edits to the nearest reference / its length
    hyps, refs = ["K AE1 T", "R IY1 D", "HH IY1 AY1"], [["K AE1 T", "R EH1 D", "HH AY1"], [None, "R IY1 D", None]]
    assert found["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, refs).score)
    assert found["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, refs).score)
