"""Decoding an encoder–decoder (`charlm.tasks.translate.decoding`) with tiny float64 models: beam 1 is greedy,
a wider beam scores at least as well, every output's log-probability is the model's, batching and grouping
change no output, seeded sampling, the length cap, `--nbest` lists, `<UNK>` never written, bad input."""

from collections import Counter

import numpy as np
import pytest

from charlm.errors import ConfigError
from charlm.models import seq2seq
from charlm.models.config import ATTENTIONS, ModelConfig
from charlm.tasks.translate import decoding
from charlm.text.batching import pad_documents
from charlm.text.tokenizer import Vocab
from charlm.text.vocab import EOS, UNK

SOURCE = Vocab.build(Counter("abcde"))
TARGET = Vocab.build(Counter("wxyz"))
SOURCES = ["a", "abc", "edcba", "bb", "ceaceace", "dddd", "eab", "cab", "dea"]


def translator(attention="additive", seed=0, *, eos_bias=0.0, target=TARGET, cell="lstm") -> decoding.Translator:
    """An untrained float64 model (its outputs are varied: some short, some long, some at the cap)."""
    cfg = ModelConfig(cell=cell, vocab_size=SOURCE.size, hidden=8, layers=1, embed=4, dropout=0.0,
                      bidirectional=attention != "dot", target_vocab=target.size, attention=attention,
                      dtype="float64")
    params = seq2seq.init_params(cfg, np.random.default_rng(seed))
    params["head.b"][EOS] += eos_bias
    return decoding.Translator(params, cfg, SOURCE, target)


def ids_of(t, texts=SOURCES) -> list[np.ndarray]:
    return [decoding.source_ids(t, s) for s in texts]


def model_logprob(t, source: np.ndarray, output: decoding.Output) -> float:
    """The model's teacher-forced log-probability of `output` (its `<EOS>` too unless it was capped)."""
    target = output.ids if output.capped else np.append(output.ids, EOS)
    x, x_lengths = pad_documents([source])
    y, y_lengths = pad_documents([target])
    return -float(seq2seq.sequence_nll(t.params, t.cfg, x, x_lengths, y, y_lengths)[0])


def same(a: decoding.Output, b: decoding.Output) -> bool:
    return (a.text == b.text and a.capped == b.capped and np.array_equal(a.ids, b.ids)
            and a.logprob == pytest.approx(b.logprob, rel=1e-10, abs=1e-12))


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_beam_of_one_is_greedy_decoding(attention, seed):
    t = translator(attention, seed)
    ids = ids_of(t)
    greedy = decoding.generate(t, ids)
    beam = decoding.beam_search(t, ids, beam=1)
    for g, b in zip(greedy, beam, strict=True):
        assert len(g) == len(b) == 1
        assert same(g[0], b[0]), (g[0], b[0])
        assert g[0].score == pytest.approx(b[0].score, rel=1e-10)


def test_the_greedy_outputs_of_these_models_are_varied():
    """The models of these tests write outputs of several lengths, some cut at the cap: the comparisons above
    and below are not between empty strings."""
    outputs = [found[0] for a in ATTENTIONS for s in (0, 1) for found in decoding.generate(translator(a, s),
                                                                                              ids_of(translator()))]
    assert len({len(o.ids) for o in outputs}) >= 5
    assert any(o.capped for o in outputs) and sum(not o.capped and len(o.ids) > 0 for o in outputs) >= 10


@pytest.mark.parametrize("beam", [2, 3, 5])
def test_a_wider_beam_finds_an_output_scored_at_least_as_well_as_greedy(beam):
    t = translator("additive", 0)
    ids = ids_of(t)
    greedy = [found[0] for found in decoding.generate(t, ids)]
    best = [found[0] for found in decoding.beam_search(t, ids, beam=beam)]
    compared = [(g, b) for g, b in zip(greedy, best, strict=True) if not g.capped]
    assert len(compared) >= 6
    for g, b in compared:
        assert b.score >= g.score - 1e-12, (g, b)
    assert any(b.score > g.score + 1e-6 for g, b in compared)  # the beam does find better outputs here


@pytest.mark.parametrize(("attention", "seed", "beam"), [("additive", 0, 3), ("general", 1, 4), ("none", 0, 2),
                                                         ("dot", 1, 3)])
def test_every_output_of_the_beam_carries_the_models_own_logprob_and_score(attention, seed, beam):
    """Each hypothesis's tokens and log-probability stay together as the beam reorders them: the logprob is the
    teacher-forced one of its tokens, the score that over its tokens (`<EOS>` counted when it ended)."""
    t = translator(attention, seed)
    ids = ids_of(t)
    for source, found in zip(ids, decoding.beam_search(t, ids, beam=beam, nbest=beam), strict=True):
        assert len(found) == beam
        for output in found:
            assert output.logprob == pytest.approx(model_logprob(t, source, output), rel=1e-9, abs=1e-12)
            assert output.score == pytest.approx(output.logprob / (len(output.ids) + (not output.capped)))
            assert output.text == TARGET.decode(output.ids)


@pytest.mark.parametrize(("beam", "group"), [(1, 3), (3, 7), (2, 512)])
def test_decoding_several_sources_at_once_gives_each_one_its_output_alone(monkeypatch, beam, group):
    """Sorted by length and cut into groups of GROUP rows (small here: several groups), in any order, a source
    repeated or not: each source's outputs are those it gets decoded alone."""
    t = translator("general", 1)
    alone = [decoding.beam_search(t, [x], beam=beam, nbest=beam)[0] for x in ids_of(t)]
    monkeypatch.setattr(decoding, "GROUP", group)
    order = np.random.default_rng(4).permutation(len(SOURCES))
    shuffled = [SOURCES[i] for i in order] + [SOURCES[order[0]]]
    together = decoding.beam_search(t, ids_of(t, shuffled), beam=beam, nbest=beam)
    assert len(together) == len(shuffled)
    for found, i in zip(together, [*order, order[0]], strict=True):
        assert len(found) == len(alone[i])
        assert all(same(a, b) for a, b in zip(found, alone[i], strict=True)), (SOURCES[i], found, alone[i])


def test_greedy_decoding_in_small_groups_matches_too(monkeypatch):
    t = translator("additive", 1)
    alone = [decoding.generate(t, [x])[0][0] for x in ids_of(t)]
    monkeypatch.setattr(decoding, "GROUP", 2)
    reversed_ = decoding.generate(t, ids_of(t, SOURCES[::-1]))
    assert all(same(found[0], a) for found, a in zip(reversed_[::-1], alone, strict=True))


def test_sampling_is_reproducible_with_a_seed_and_its_samples_differ():
    t = translator("general", 0)
    ids = ids_of(t, ["abc", "edcba"])
    first = decoding.sample(t, ids, samples=6, seed=7)
    again = decoding.sample(t, ids, samples=6, seed=7)
    other = decoding.sample(t, ids, samples=6, seed=8)
    texts = [[o.text for o in found] for found in first]
    assert texts == [[o.text for o in found] for found in again]
    assert texts != [[o.text for o in found] for found in other]
    assert all(len(found) == 6 and len(set(found)) > 1 for found in texts)
    for source, found in zip(ids, first, strict=True):  # a drawn output's logprob is still the model's
        for output in found:
            assert output.logprob == pytest.approx(model_logprob(t, source, output), rel=1e-9)


def test_sampling_at_temperature_zero_is_greedy():
    t = translator("general", 0)
    ids = ids_of(t)
    cold = decoding.sample(t, ids, samples=2, temperature=0.0, seed=1)
    greedy = decoding.generate(t, ids)
    for found, g in zip(cold, greedy, strict=True):
        assert all(same(o, g[0]) for o in found)


def test_a_model_that_never_ends_is_cut_at_the_length_cap():
    """length_cap(n) counts the `<EOS>`: an output that ends has at most length_cap(n) - 1 tokens before it;
    one that never does is cut after length_cap(n) tokens, marked capped, scored over those tokens."""
    t = translator("general", 0, eos_bias=-1e9)
    ids = ids_of(t)
    for decoded in (decoding.generate(t, ids), decoding.beam_search(t, ids, beam=3, nbest=2),
                    decoding.sample(t, ids, samples=2, seed=0)):
        for source, found in zip(ids, decoded, strict=True):
            for output in found:
                assert output.capped and len(output.ids) == decoding.length_cap(len(source))
                assert EOS not in output.ids and UNK not in output.ids
                assert output.score == pytest.approx(output.logprob / len(output.ids))
                assert output.to_json()["capped"] is True
    assert decoding.length_cap(4) == int(np.ceil(decoding.MAX_RATIO * 4)) + decoding.MAX_EXTRA


def test_outputs_that_end_stay_under_the_cap_and_are_not_capped():
    t = translator("additive", 1)
    for source, found in zip(ids_of(t), decoding.beam_search(t, ids_of(t), beam=3, nbest=3), strict=True):
        for output in found:
            cap = decoding.length_cap(len(source))
            assert len(output.ids) <= cap and (output.capped == (len(output.ids) == cap))


def test_a_model_that_ends_at_once_writes_an_empty_output():
    t = translator("general", 0, eos_bias=1e9)
    for found in decoding.beam_search(t, ids_of(t), beam=2, nbest=1) + decoding.generate(t, ids_of(t)):
        assert found[0].text == "" and not found[0].capped and found[0].logprob == pytest.approx(0.0)


def test_unk_is_never_written_however_likely():
    t = translator("general", 0, eos_bias=0.0)
    t.params["head.b"][UNK] += 50.0
    outputs = [o for found in decoding.beam_search(t, ids_of(t), beam=3, nbest=3) + decoding.generate(t, ids_of(t))
               + decoding.sample(t, ids_of(t), samples=3, seed=1) for o in found]
    assert outputs and all(UNK not in o.ids and "\ufffd" not in o.text for o in outputs)


@pytest.mark.parametrize(("target", "beam"), [(TARGET, 5), (Vocab.build(Counter("xy")), 6)])
def test_nbest_lists_are_sorted_distinct_and_real(target, beam):
    """The n best by score, best first, no output twice; a beam wider than the tokens there are to extend
    (here 3 tokens: `<EOS>`, x, y) returns no hypothesis of probability 0."""
    t = translator("general", 2, target=target)
    ids = ids_of(t)
    for source, found in zip(ids, decoding.beam_search(t, ids, beam=beam, nbest=beam), strict=True):
        scores = [o.score for o in found]
        assert scores == sorted(scores, reverse=True)
        assert len({o.text for o in found}) == len(found) == beam
        assert all(np.isfinite(o.logprob) for o in found)
        top = decoding.beam_search(t, [source], beam=beam, nbest=2)[0]
        assert [o.text for o in top] == [o.text for o in found[:2]]


@pytest.mark.parametrize(("beam", "nbest"), [(0, 1), (2, 3), (2, 0)])
def test_beam_and_nbest_out_of_range_are_refused(beam, nbest):
    t = translator()
    with pytest.raises(ConfigError, match="--beam"):
        decoding.beam_search(t, ids_of(t, ["abc"]), beam=beam, nbest=nbest)


@pytest.mark.parametrize(("text", "where", "message"), [
    ("", "", "'': the source is empty"),
    ("zzq", "", "'zzq': every token of the source is unknown to the model ('q', 'z')"),
    ("zz", "pairs.tsv:3", "pairs.tsv:3: every token of the source is unknown"),
])
def test_a_source_with_nothing_known_is_refused_naming_it(text, where, message):
    with pytest.raises(ConfigError) as caught:
        decoding.source_ids(translator(), text, where)
    assert message in str(caught.value)


def test_a_source_with_some_unknown_tokens_is_decoded():
    t = translator()
    [ids] = ids_of(t, ["azb"])
    assert ids.tolist() == [SOURCE.encode("a")[0], UNK, SOURCE.encode("b")[0]]
    assert len(decoding.generate(t, [ids])[0]) == 1
