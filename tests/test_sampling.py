"""Sampling: filtering, the batched generation loop, stop rules, beam search, streaming output."""

import itertools
import math

import numpy as np
import pytest

from charlm.errors import ConfigError
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state, step_logits
from charlm.tasks.choosing import check_sampling_options, draw, filter_logits, log_softmax, make_picker
from charlm.tasks.lm.sampling import OrderedStream, beam_search, beam_search_ids, generate, generate_ids
from charlm.tasks.lm.stops import TextStops, encode_stops
from charlm.text.tokenizer import EOS, UNK, Vocab

# chi-square 0.999 quantiles by degrees of freedom
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46}


def bigram_step(table):
    """A stateless model: the logits of the next id are row `ids` of a fixed (V, V) table."""
    return lambda ids, state: (table[np.asarray(ids)], state)


@pytest.fixture
def table():
    return np.random.default_rng(3).normal(0.0, 1.5, (5, 5))


def softmax(z):
    return np.exp(log_softmax(np.atleast_2d(z)))


def chi_square(counts, probs):
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


# ---------------------------------------------------------------------------------------------- filtering


def test_temperature_zero_is_argmax_and_deterministic(table):
    pick = make_picker(np.random.default_rng(0), temperature=0)
    logits = np.random.default_rng(1).normal(size=(50, 7))
    assert np.array_equal(pick(logits), np.argmax(logits, axis=1))
    assert np.array_equal(pick(logits), pick(logits))


def test_top_k_one_equals_greedy():
    logits = np.random.default_rng(2).normal(size=(200, 9))
    pick = make_picker(np.random.default_rng(0), temperature=1.0, top_k=1)
    assert np.array_equal(pick(logits), np.argmax(logits, axis=1))


def test_top_k_keeps_exactly_k_most_likely():
    logits = np.random.default_rng(4).normal(size=(30, 12))
    lp = filter_logits(logits, top_k=4)
    kept = np.isfinite(lp)
    assert (kept.sum(axis=1) == 4).all()
    fourth = np.sort(logits, axis=1)[:, -4]
    assert np.array_equal(kept, logits >= fourth[:, None])
    assert np.allclose(np.exp(lp).sum(axis=1), 1.0)


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    probs = np.array([[0.05, 0.5, 0.15, 0.3]])
    logits = np.log(probs)
    for p, expected in [(0.49, {1}), (0.51, {1, 3}), (0.79, {1, 3}), (0.81, {1, 2, 3}), (0.96, {0, 1, 2, 3}),
                        (1.0, {0, 1, 2, 3})]:
        kept = set(np.flatnonzero(np.isfinite(filter_logits(logits, top_p=p))[0]))
        assert kept == expected, p
    lp = filter_logits(logits, top_p=0.7)
    assert np.allclose(np.exp(lp[0, [1, 3]]), [0.5 / 0.8, 0.3 / 0.8])
    # exactly representable masses: a set whose mass equals p is enough
    exact = np.log(np.array([[0.125, 0.5, 0.125, 0.25]]))
    assert set(np.flatnonzero(np.isfinite(filter_logits(exact, top_p=0.75))[0])) == {1, 3}
    assert set(np.flatnonzero(np.isfinite(filter_logits(exact, top_p=0.5))[0])) == {1}


def test_top_p_matches_a_sorted_reference_on_random_rows():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, size=(300, 10))
    p = rng.uniform(0.05, 0.99, size=300)
    for row, top_p in zip(logits, p, strict=True):
        probs = softmax(row)[0]
        order = np.argsort(-probs)
        mass = np.cumsum(probs[order])
        if np.min(np.abs(mass - top_p)) < 1e-9:
            continue  # on a boundary either answer is a rounding away
        m = int(np.searchsorted(mass, top_p)) + 1  # the smallest m with mass >= top_p
        kept = np.isfinite(filter_logits(row[None], top_p=top_p))[0]
        assert set(np.flatnonzero(kept)) == set(order[:m].tolist())


def test_extreme_temperatures_stay_finite():
    logits = np.array([[3.0, 1.0, -2.0, 2.9]], dtype=np.float32)
    cold = filter_logits(logits, temperature=1e-8)
    assert np.exp(cold[0, 0]) == 1.0 and not np.isnan(cold).any()
    hot = np.exp(filter_logits(logits, temperature=1e6))
    assert np.isfinite(hot).all() and np.allclose(hot, 0.25, atol=1e-5)


@pytest.mark.parametrize("bad", [dict(temperature=-0.1), dict(temperature=math.nan),
                                 dict(temperature=math.inf), dict(top_k=0), dict(top_k=6), dict(top_p=0.0),
                                 dict(top_p=1.01)])
def test_bad_sampling_options_are_config_errors(bad):
    options = dict(temperature=1.0, top_k=None, top_p=None) | bad
    with pytest.raises(ConfigError):
        check_sampling_options(5, **options)


def test_draw_frequencies_match_the_softmax():
    logits = np.array([1.0, -0.5, 0.3, 2.0, 0.0])
    for temperature, top_k in [(1.0, None), (2.0, None), (0.7, 3)]:
        lp = filter_logits(np.tile(logits, (40000, 1)), temperature=temperature, top_k=top_k)
        ids = draw(lp, np.random.default_rng(7))
        counts = np.bincount(ids, minlength=5)
        probs = np.exp(lp[0])
        support = probs > 0
        assert counts[~support].sum() == 0
        stat = chi_square(counts[support], probs[support])
        assert stat < CHI2_999[int(support.sum()) - 1], (temperature, top_k, stat)


class FixedDraw:
    """An rng whose uniform draws all equal `value`."""

    def __init__(self, value):
        self.value = value

    def random(self, n):
        return np.full(n, self.value)


def test_draw_at_the_ends_of_the_unit_interval_stays_in_the_support():
    rng = np.random.default_rng(8)
    probs = rng.dirichlet(np.ones(6), size=2000) * (rng.random((2000, 6)) > 0.3)
    probs[:, 2] += 1e-3  # every row keeps some mass
    with np.errstate(divide="ignore"):
        lowest = draw(np.log(probs), FixedDraw(0.0))
        highest = draw(np.log(probs), FixedDraw(1.0 - 2.0 ** -53))  # the largest value numpy returns
    rows = np.arange(2000)
    assert (probs[rows, lowest] > 0).all() and (probs[rows, highest] > 0).all()
    assert (lowest == np.argmax(probs > 0, axis=1)).all()  # the first id with mass
    assert (highest == 5 - np.argmax(probs[:, ::-1] > 0, axis=1)).all()  # the last id with mass


def test_draw_never_picks_a_zero_probability_id():
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]))
    ids = np.stack([draw(lp, np.random.default_rng(s)) for s in range(500)])
    assert (ids[:, 0] == 1).all() and set(ids[:, 1].tolist()) == {0, 2}


# ---------------------------------------------------------------------------------------------- generation


def run(table, seed=0, n=4, length=30, eos_ends=False, stops=(), context=(EOS,), on_step=None, banned=(),
        **pick_options):
    pick = make_picker(np.random.default_rng(seed), **pick_options)
    if not isinstance(stops, TextStops):
        stops = [np.array(s) for s in stops]
    return generate_ids(bigram_step(table), None, np.array(context), num_samples=n, length=length, pick=pick,
                        eos_ends=eos_ends, stops=stops, banned=banned, on_step=on_step)


def test_generation_follows_the_model_frequencies(table):
    # every sample's first id is drawn from row EOS, its second from the row of the first
    ids, _, _ = run(table, n=20000, length=2)
    first = np.array([s[0] for s in ids])
    stat = chi_square(np.bincount(first, minlength=5), softmax(table[EOS])[0])
    assert stat < CHI2_999[4]
    after_3 = np.array([s[1] for s in ids if s[0] == 3])
    stat = chi_square(np.bincount(after_3, minlength=5), softmax(table[3])[0])
    assert stat < CHI2_999[4]


def test_same_seed_same_samples_and_different_seed_differs(table):
    a, b, c = run(table, seed=11), run(table, seed=11), run(table, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert np.array_equal(a[1], b[1])
    assert not all(np.array_equal(x, y) for x, y in zip(a[0], c[0], strict=True))


def test_greedy_follows_the_argmax_chain_and_logprob_is_the_model_logprob(table):
    ids, logprob, _ = run(table, n=3, length=6, temperature=0)
    expected, lp, cur = [], 0.0, EOS
    for _ in range(6):
        nxt = int(np.argmax(table[cur]))
        lp += log_softmax(table[cur][None])[0, nxt]
        expected.append(nxt)
        cur = nxt
    for sample in ids:
        assert sample.tolist() == expected
    assert np.allclose(logprob, lp)


def test_samples_end_at_eos_when_eos_ends(table):
    table = table.copy()
    table[:, EOS] += 1.0  # make the end of a document reasonably likely
    ids, logprob, ended = run(table, n=200, length=50, eos_ends=True)
    for sample, end in zip(ids, ended, strict=True):
        assert (EOS in sample.tolist()) == end
        if end:
            assert sample[-1] == EOS and EOS not in sample[:-1].tolist()
    assert ended.mean() > 0.9
    # without eos_ends every sample runs the full length, through <EOS>s
    ids, _, ended = run(table, n=20, length=50, eos_ends=False)
    assert not ended.any() and all(len(s) == 50 for s in ids)
    assert any(EOS in s.tolist() for s in ids)


def test_logprob_of_ended_rows_matches_their_path(table):
    table = table.copy()
    table[:, EOS] += 1.0
    ids, logprob, _ = run(table, n=50, length=40, eos_ends=True)
    lsm = log_softmax(table)
    for sample, lp in zip(ids, logprob, strict=True):
        prev = np.concatenate([[EOS], sample[:-1]])
        assert lp == pytest.approx(lsm[prev, sample].sum())


def test_stop_sequence_ends_a_sample_and_is_kept(table):
    ids, _, ended = run(table, n=300, length=60, stops=[(2, 3)])
    stopped = 0
    for s in ids:
        pairs = [tuple(s[i:i + 2].tolist()) for i in range(len(s) - 1)]
        assert (2, 3) not in pairs[:-1]
        if len(s) < 60:
            assert pairs[-1] == (2, 3)
            stopped += 1
    assert stopped > 100 and not ended.any()


def test_stop_sequence_may_start_in_the_prime(table):
    # context <EOS> 2: a first generated 3 completes the stop sequence (2, 3)
    ids, _, _ = run(table, n=500, length=5, stops=[(2, 3)], context=(EOS, 2))
    for s in ids:
        if s[0] == 3:
            assert len(s) == 1


def test_banned_ids_are_never_generated_and_the_rest_keep_their_odds(table):
    ids, logprob, _ = run(table, n=20000, length=2, banned=(UNK,))
    first = np.array([s[0] for s in ids])
    assert not any(UNK in s.tolist() for s in ids)
    allowed = np.arange(5) != UNK
    probs = softmax(table[EOS])[0][allowed]
    stat = chi_square(np.bincount(first, minlength=5)[allowed], probs / probs.sum())
    assert stat < CHI2_999[3]
    # the reported log-probability is still the model's, <UNK> included in its normalisation
    lsm = log_softmax(table)
    for sample, lp in zip(ids[:50], logprob[:50], strict=True):
        assert lp == pytest.approx(lsm[[EOS, sample[0]], sample].sum())
    for options in (dict(temperature=0.5, top_k=2), dict(top_p=0.5), dict(temperature=3.0)):
        ids, _, _ = run(table, n=300, length=5, banned=(UNK,), **options)
        assert not any(UNK in s.tolist() for s in ids), options


def test_greedy_with_a_banned_argmax_takes_the_next_best(table):
    table = table.copy()
    table[:, UNK] = 50.0  # <UNK> is the argmax of every row
    ids, _, _ = run(table, n=2, length=6, temperature=0, banned=(UNK,))
    expected, cur = [], EOS
    for _ in range(6):
        row = table[cur].copy()
        row[UNK] = -np.inf
        cur = int(np.argmax(row))
        expected.append(cur)
    assert all(s.tolist() == expected for s in ids)
    allowed, _, _ = run(table, n=2, length=3, temperature=0)
    assert all(s.tolist() == [UNK] * 3 for s in allowed)


def test_text_stops_match_like_id_stops_for_characters(table):
    # with a character vocabulary every id is one character, so text and id matching agree
    vocab = Vocab("abc")  # ids 2, 3, 4 = a, b, c
    by_ids = run(table, n=300, length=40, stops=[(2, 3)], context=(EOS, 2))[0]
    by_text = run(table, n=300, length=40, context=(EOS, 2),
                  stops=TextStops(vocab, ["ab"], prime="a", context=np.array([EOS, 2])))[0]
    assert all(np.array_equal(x, y) for x, y in zip(by_ids, by_text, strict=True))
    assert any(len(s) < 40 for s in by_text)


def test_text_stops_end_inside_generated_text_only():
    # the prime "xab" already holds the stop string "ab": only a new occurrence ends the sample
    vocab = Vocab("abx")  # a=2, b=3, x=4
    stops = TextStops(vocab, ["ab", "bxa"], prime="xab", context=np.array([EOS, 4, 2, 3]))
    matcher = stops.start(2)
    assert matcher.push(np.array([4, 2])).tolist() == [False, False]  # "xabx", "xaba"
    assert matcher.push(np.array([2, 3])).tolist() == [True, True]  # "xabxa" ends with "bxa", "xabab"
    matcher.keep(np.array([1, 1, 0]))
    assert matcher.tails == ["ab", "ab", "xa"]


def test_length_zero_gives_nothing(table):
    ids, logprob, ended = run(table, n=3, length=0)
    assert [len(s) for s in ids] == [0, 0, 0] and not logprob.any() and not ended.any()


def test_on_step_reports_live_rows(table):
    table = table.copy()
    table[:, EOS] += 1.0
    seen = {}

    def on_step(rows, ids, ended):
        assert len(rows) == len(ids) == len(ended)
        for r, i in zip(rows.tolist(), ids.tolist(), strict=True):
            seen.setdefault(r, []).append(i)

    ids, _, _ = run(table, n=30, length=25, eos_ends=True, on_step=on_step)
    assert all(seen[r] == ids[r].tolist() for r in range(30))


# ---------------------------------------------------------------------------------------------- beam search


def exhaustive_best(table, length, eos_ends):
    lsm = log_softmax(table)
    best = (-np.inf, None)
    V = table.shape[0]
    for n in range(1, length + 1):
        for seq in itertools.product(range(V), repeat=n):
            if eos_ends and EOS in seq[:-1]:
                continue
            if eos_ends and n < length and seq[-1] != EOS:
                continue
            if not eos_ends and n < length:
                continue
            prev = (EOS,) + seq[:-1]
            best = max(best, (lsm[list(prev), list(seq)].sum(), seq))
    return best


@pytest.mark.parametrize("eos_ends", [False, True])
def test_wide_beam_finds_the_most_likely_continuation(table, eos_ends):
    lp, seq = exhaustive_best(table, 4, eos_ends)
    found = beam_search_ids(bigram_step(table), None, np.array([EOS]), beam=5 ** 4, length=4,
                            eos_ends=eos_ends)
    assert found[0][0].tolist() == list(seq)
    assert found[0][1] == pytest.approx(lp)
    assert [f[1] for f in found] == sorted((f[1] for f in found), reverse=True)


def test_beam_search_never_proposes_a_banned_id(table):
    table = table.copy()
    table[:, UNK] = 50.0
    found = beam_search_ids(bigram_step(table), None, np.array([EOS]), beam=30, length=4, eos_ends=False,
                            banned=(UNK,))
    assert len(found) == 30 and not any(UNK in ids.tolist() for ids, _, _ in found)
    row = table.copy()
    row[:, UNK] = -np.inf
    lp, seq = exhaustive_best(row, 4, eos_ends=False)
    assert found[0][0].tolist() == list(seq)
    # the score is the model's log-probability (<UNK> keeps its share of every softmax)
    lsm = log_softmax(table)
    assert found[0][1] == pytest.approx(lsm[[EOS, *seq[:-1]], list(seq)].sum())


def test_beam_of_one_is_greedy(table):
    found = beam_search_ids(bigram_step(table), None, np.array([EOS]), beam=1, length=7, eos_ends=False)
    greedy, _, _ = run(table, n=1, length=7, temperature=0)
    assert found[0][0].tolist() == greedy[0].tolist()


# ---------------------------------------------------------------------------------------------- with a model


@pytest.fixture
def model():
    vocab = Vocab("abcde")
    cfg = ModelConfig("lstm", vocab.size, 8, layers=2)
    params = init_params(cfg, np.random.default_rng(0))
    params["head.b"][EOS] = 2.0  # documents are short
    return params, cfg, vocab


def test_lines_mode_samples_end_at_eos(model):
    params, cfg, vocab = model
    samples = generate(params, cfg, vocab, num_samples=40, length=200, seed=1, stop_at_eos=True)
    assert all(s.ended_at_eos and s.ids[-1] == EOS and "\n" not in s.text for s in samples)
    assert [s.text for s in samples] == [vocab.decode(s.ids[:-1]) for s in samples]


def test_model_greedy_matches_a_naive_step_loop(model):
    params, cfg, vocab = model
    params["head.b"][EOS] = -5.0
    samples = generate(params, cfg, vocab, num_samples=2, length=12, temperature=0, prime="ab")
    state, text, logprob = init_state(cfg, 1), "ab", 0.0
    for i in [EOS, *vocab.encode("ab")]:
        logits, state = step_logits(params, cfg, np.array([i]), state)
    for _ in range(12):
        nxt = int(np.argmax(logits[0]))
        logprob += log_softmax(logits)[0, nxt]
        text += vocab.decode([nxt])
        logits, state = step_logits(params, cfg, np.array([nxt]), state)
    assert [s.text for s in samples] == [text, text]
    assert samples[0].logprob == pytest.approx(logprob, rel=1e-6)


def test_unknown_prime_characters_warn_once_or_fail_when_strict(model):
    params, cfg, vocab = model
    warnings = []
    samples = generate(params, cfg, vocab, length=3, prime="abzé", seed=0, warn=warnings.append)
    assert len(warnings) == 1 and "'z'" in warnings[0] and "'é'" in warnings[0]
    assert samples[0].text.startswith("abzé")
    with pytest.raises(ConfigError, match="'z'"):
        generate(params, cfg, vocab, length=3, prime="abz", strict=True)


def test_unk_is_never_sampled_unless_allowed(model):
    params, cfg, vocab = model
    params["head.b"][UNK] = 3.0  # <UNK> is likely
    for options in (dict(seed=0), dict(temperature=0), dict(top_k=2, seed=1)):
        samples = generate(params, cfg, vocab, num_samples=30, length=20, **options)
        assert not any(UNK in s.ids.tolist() for s in samples), options
        assert all("\ufffd" not in s.text for s in samples)
    beams = beam_search(params, cfg, vocab, beam=4, length=8, prime="a")
    assert not any(UNK in s.ids.tolist() for s in beams)
    allowed = generate(params, cfg, vocab, num_samples=30, length=20, seed=0, allow_unk=True)
    assert any(UNK in s.ids.tolist() for s in allowed)
    assert all(s.text == vocab.decode(s.ids) for s in allowed)
    assert UNK in beam_search(params, cfg, vocab, beam=4, length=8, prime="a", allow_unk=True)[0].ids


def test_bad_counts_are_config_errors(model):
    params, cfg, vocab = model
    for options in (dict(num_samples=0), dict(length=-1)):
        with pytest.raises(ConfigError):
            generate(params, cfg, vocab, **options)
    for options in (dict(beam=0), dict(beam=2, length=-1)):
        with pytest.raises(ConfigError):
            beam_search(params, cfg, vocab, prime="a", **options)


def test_stop_string_outside_the_vocabulary_is_dropped_with_a_warning(model):
    params, cfg, vocab = model
    warnings = []
    generate(params, cfg, vocab, length=3, stop=["zz"], seed=0, warn=warnings.append)
    assert len(warnings) == 1 and "'zz'" in warnings[0]


def test_beam_search_on_a_model_is_deterministic_and_ranked(model):
    params, cfg, vocab = model
    a = beam_search(params, cfg, vocab, beam=3, length=10, prime="ab", stop_at_eos=True)
    b = beam_search(params, cfg, vocab, beam=3, length=10, prime="ab", stop_at_eos=True)
    assert [s.text for s in a] == [s.text for s in b]
    assert a[0].logprob >= a[1].logprob >= a[2].logprob
    assert all(s.text.startswith("ab") for s in a)


def test_ordered_stream_writes_the_final_text(model):
    params, cfg, vocab = model
    for eos_ends in (True, False):
        out = []
        stream = OrderedStream(vocab, 6, "ab", out.append, eos_ends=eos_ends, separator="\n\n")
        samples = generate(params, cfg, vocab, num_samples=6, length=15, prime="ab", seed=3,
                           stop_at_eos=eos_ends, on_step=stream)
        stream.finish()
        assert "".join(out) == "\n\n".join(s.text for s in samples) + "\n"


def test_newline_stop_means_eos_when_the_vocabulary_has_no_newline():
    assert [s.tolist() for s in encode_stops(Vocab("ab"), ["a\nb", "\n"])] == [[2, EOS, 3], [EOS]]
    assert [s.tolist() for s in encode_stops(Vocab("\nab"), ["a\n"])] == [[3, 2]]
