"""Word-sized language models: the tied head (config, shapes, gradients as the sum of the table's two uses),
float64 gradient checks at a word vocabulary with a mask, memory that does not grow with V beyond the
parameters and one (N, V) logits buffer, stepping, and a word model learning a generated grammar."""

import tracemalloc

import numpy as np
import pytest
from reference import naive_model_nll, seed_of

from charlm.engine.gradcheck import numeric_gradient, rel_error
from charlm.engine.optim import clip_gradients, make_optimizer
from charlm.errors import ConfigError
from charlm.models.config import ModelConfig
from charlm.models.lm import (
    forward_nll,
    init_params,
    init_state,
    loss_and_grads,
    loss_grads_and_dstate,
    param_shapes,
    step_logits,
    trace,
)


def make(cell="lstm", V=300, H=6, L=1, tie=False, dtype="float64", seed=0):
    cfg = ModelConfig(cell=cell, vocab_size=V, hidden=H, layers=L, embed=H, tie=tie, dtype=dtype)
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng)
    for name, value in params.items():
        if name.endswith(".b"):
            value += 0.1 * rng.standard_normal(value.shape)  # a generic point, not the symmetric zero bias
    return cfg, params, rng


def random_state(cfg, B, rng):
    return [tuple(0.5 * rng.standard_normal(a.shape) for a in layer) for layer in init_state(cfg, B)]


# --------------------------------------------------------------------------------------------- config

def test_tie_defaults_to_false_and_round_trips():
    assert ModelConfig(cell="gru", vocab_size=9, hidden=4).tie is False
    cfg = ModelConfig(cell="gru", vocab_size=9, hidden=4, embed=4, tie=True)
    assert cfg.to_dict()["tie"] is True and ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("embed,hidden", [(0, 8), (4, 8), (16, 8)])
def test_tie_needs_embed_equal_to_hidden_and_the_message_names_the_flags(embed, hidden):
    with pytest.raises(ConfigError) as caught:
        ModelConfig(cell="lstm", vocab_size=50, hidden=hidden, embed=embed, tie=True)
    assert str(caught.value).startswith(
        f"--tie needs --embed equal to --hidden (got --embed {embed}, --hidden {hidden})")
    ModelConfig(cell="lstm", vocab_size=50, hidden=hidden, embed=embed)  # untied: any width is fine


@pytest.mark.parametrize("tie", [1, "true", None])
def test_tie_must_be_a_bool(tie):
    with pytest.raises(ConfigError, match="tie"):
        ModelConfig.from_dict({"cell": "lstm", "vocab_size": 5, "hidden": 4, "embed": 4, "tie": tie})


def test_tied_model_has_no_head_weight_and_starts_near_uniform():
    cfg = ModelConfig(cell="lstm", vocab_size=1000, hidden=32, layers=2, embed=32, tie=True)
    shapes = param_shapes(cfg)
    assert "head.W" not in shapes and shapes["embed.W"] == (1000, 32) and shapes["head.b"] == (1000,)
    untied = param_shapes(ModelConfig(**{**cfg.to_dict(), "tie": False}))
    assert set(untied) - set(shapes) == {"head.W"}
    params = init_params(cfg, np.random.default_rng(0))
    assert set(params) == set(shapes) and np.abs(params["embed.W"]).max() <= 1 / np.sqrt(32)
    x = np.random.default_rng(1).integers(0, 1000, (10, 4))
    loss, grads, _ = loss_and_grads(params, cfg, x, x, init_state(cfg, 4))
    assert set(grads) == set(params)
    assert abs(loss - np.log(1000)) < 0.05  # the head's init: logits start near zero
    opt = make_optimizer("adam", params)  # the optimiser keeps slots for the parameters there are
    opt.step(params, grads, 1e-3)
    assert {key.split("/", 1)[1] for key in opt.state_arrays()} == set(shapes)


# ------------------------------------------------------------------------------------------ gradients

def coords_to_check(name, value, x, y, rng, n=16):
    """Flat coordinates of a word-sized tensor worth checking: for embed.W the rows of input ids (the
    gather's gradient) and of target ids (the tied head's largest entries) plus random rows; for head.W and
    head.b the target columns plus random ones; all entries of a small tensor."""
    if value.size <= 3 * n:
        return np.arange(value.size)
    flat = np.arange(value.size).reshape(value.shape)
    if name == "embed.W":
        rows = np.r_[rng.choice(np.unique(x), 3), rng.choice(np.unique(y), 3), rng.integers(0, len(value), 3)]
        return flat[rows].reshape(-1)
    if name in ("head.W", "head.b"):
        cols = np.r_[rng.choice(np.unique(y), 4), rng.integers(0, value.shape[-1], 4)]
        return flat[..., cols].reshape(-1)
    return rng.choice(value.size, n, replace=False)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers,V", [(1, 1000), (2, 300)])
def test_word_sized_gradcheck_with_a_mask(cell, tie, layers, V):
    cfg, params, rng = make(cell, V=V, H=5, L=layers, tie=tie, seed=seed_of(cell, tie, layers, V))
    T, B = 4, 3
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    mask = np.array([[1.0, 0.0, 1.0], [2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.5, 1.0]])
    state = random_state(cfg, B, rng)
    _, grads, _, dstate = loss_grads_and_dstate(params, cfg, x, y, state, mask=mask)

    def loss():
        return loss_and_grads(params, cfg, x, y, state, mask=mask)[0]

    tensors = [(k, params[k], grads[k]) for k in params]
    tensors += [(f"state.{l}.{k}", a, dstate[l][k]) for l, arrays in enumerate(state) for k, a in enumerate(arrays)]
    for name, value, analytic in tensors:
        coords = coords_to_check(name, value, x, y, rng)
        numeric = numeric_gradient(loss, value, coords, 1e-3)
        err = rel_error(analytic.reshape(-1)[coords], numeric)
        assert err < 1e-6, f"{name}: rel error {err:.2e}"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_tied_gradient_is_the_input_gradient_plus_the_head_gradient_transposed(cell):
    tied_cfg, tied, rng = make(cell, V=300, H=6, L=2, tie=True)
    cfg = ModelConfig(**{**tied_cfg.to_dict(), "tie": False})
    untied = {**tied, "head.W": tied["embed.W"].T.copy()}  # the same function of the same numbers
    x, y = rng.integers(0, 300, (5, 3)), rng.integers(0, 300, (5, 3))
    mask = (rng.random((5, 3)) < 0.7).astype(float)
    mask[0, 0] = 1.0
    state = random_state(cfg, 3, rng)
    loss, grads, _ = loss_and_grads(untied, cfg, x, y, state, mask=mask)
    tied_loss, tied_grads, _ = loss_and_grads(tied, tied_cfg, x, y, state, mask=mask)
    assert tied_loss == pytest.approx(loss, abs=1e-13)
    assert set(tied_grads) == set(grads) - {"head.W"}
    np.testing.assert_allclose(tied_grads["embed.W"], grads["embed.W"] + grads["head.W"].T, rtol=0, atol=1e-13)
    assert np.abs(grads["embed.W"]).max() > 0 and np.abs(grads["head.W"]).max() > 0  # both uses contribute
    for name in set(tied_grads) - {"embed.W"}:
        np.testing.assert_allclose(tied_grads[name], grads[name], rtol=0, atol=1e-13, err_msg=name)


# ----------------------------------------------------------------------------------- forward passes

@pytest.mark.parametrize("tie", [False, True])
def test_word_model_forward_step_and_trace_agree_with_the_naive_model(tie):
    cfg, params, rng = make("gru", V=500, H=6, L=2, tie=tie)
    x, y = rng.integers(0, 500, (5, 3)), rng.integers(0, 500, (5, 3))
    state = random_state(cfg, 3, rng)
    nll, final = forward_nll(params, cfg, x, y, state)
    np.testing.assert_allclose(nll, naive_model_nll(params, cfg, x, y, state), rtol=0, atol=1e-12)
    stepped = state
    for t in range(5):
        logits, stepped = step_logits(params, cfg, x[t], stepped)
        assert logits.shape == (3, 500)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(-log_probs[np.arange(3), y[t]], nll[t], rtol=0, atol=1e-12)
    for a, b in zip(sum(final, ()), sum(stepped, ()), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    acts, _ = trace(params, cfg, x, state)
    assert acts["head.logits"].shape == (5, 3, 500)


# --------------------------------------------------------------------------------------------- memory

@pytest.mark.parametrize("tie", [False, True])
def test_memory_is_the_parameters_and_one_logits_buffer(tie):
    # A dense one-hot (V, N) of even one byte per entry, or a second (N, V) float32 buffer, breaks the bounds.
    V, H, T, B = 10_000, 16, 16, 8
    N = T * B
    cfg, params, rng = make("lstm", V=V, H=H, L=2, tie=tie, dtype="float32")
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    mask = (rng.random((T, B)) < 0.7).astype(np.float32)
    state = init_state(cfg, B)
    ws = {}
    tracemalloc.start()
    try:
        loss_and_grads(params, cfg, x, y, state, mask=mask, workspace=ws)
        _, first_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        settled, _ = tracemalloc.get_traced_memory()
        loss_and_grads(params, cfg, x, y, state, mask=mask, workspace=ws)
        _, second_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    table = V * H * 4  # one (V, H) float32 table
    assert first_peak < N * V * 4 + 3 * table + 256 * 1024  # logits, the tables' gradients, small things
    assert second_peak - settled < N * V // 4  # a warm step allocates nothing that grows with V times N


# ------------------------------------------------------------------------------------------- learning

DET = ["the", "a", "this", "that"]
ADJ = ["big", "small", "red", "old", "young", "happy"]
NOUN = ["cat", "dog", "bird", "fish", "man", "woman", "child", "horse", "cow", "farmer", "teacher", "king"]
VERB = ["sees", "likes", "chases", "finds", "hears", "meets", "calls", "helps"]
BASE = ["see", "like", "chase", "find", "hear", "meet", "call", "help"]
PREP = ["near", "with", "behind", "under"]
WORDS = ["<EOS>", "<UNK>", *DET, *ADJ, *NOUN, *VERB, *BASE, *PREP, "does", ".", "?"]  # V = 47
WORD_ID = {w: i for i, w in enumerate(WORDS)}


def generate(n_sentences, rng):
    """A stream `<EOS> s1 <EOS> s2 ...` of sentences from a small grammar, and the grammar's probability of
    each token after the first given everything before it (the history fixes the grammar's state):

        S  -> NP VERB NP PP? "."  |  "does" NP BASE NP PP? "?"      (each half the time)
        NP -> DET ADJ? NOUN (ADJ half the time),  PP -> PREP NP (30% of the time), words uniform per class

    A question's verb form and its "?" depend on "does" 3 to 9 tokens back, and whether a noun ends the
    subject, the object or the sentence depends on what came before it: the previous word alone cannot tell.
    """
    ids, probs = [0], []

    def emit(word, p):
        ids.append(WORD_ID[word])
        probs.append(p)

    def pick(words, p=1.0):
        emit(words[rng.integers(len(words))], p / len(words))

    def noun_phrase(p_det):
        pick(DET, p_det)
        if rng.random() < 0.5:
            pick(ADJ, 0.5)
            pick(NOUN)
        else:
            pick(NOUN, 0.5)

    for _ in range(n_sentences):
        question = rng.random() < 0.5
        if question:
            emit("does", 0.5)
        noun_phrase(1.0 if question else 0.5)
        pick(BASE if question else VERB)
        noun_phrase(1.0)
        end = "?" if question else "."
        if rng.random() < 0.3:
            pick(PREP, 0.3)
            noun_phrase(1.0)
            emit(end, 1.0)
        else:
            emit(end, 0.7)
        emit("<EOS>", 1.0)
    return np.array(ids), np.array(probs)


def bigram_entropy(ids, V):
    """Nats per token of the best model that sees only the previous token (conditional entropy of the
    stream's bigram counts)."""
    pairs = np.zeros((V, V))
    np.add.at(pairs, (ids[:-1], ids[1:]), 1.0)
    cond = pairs / np.maximum(pairs.sum(axis=1, keepdims=True), 1.0)
    return float(-(pairs * np.log(np.where(pairs > 0, cond, 1.0))).sum() / pairs.sum())


@pytest.mark.parametrize("cell,tie", [("lstm", True), ("gru", False)])
def test_word_model_learns_a_generated_grammar(cell, tie):
    rng = np.random.default_rng(0)
    train, _ = generate(1500, rng)
    held_out, true_probs = generate(200, rng)
    V = len(WORDS)
    freqs = np.bincount(train, minlength=V) / len(train)
    unigram = float(-(freqs[freqs > 0] * np.log(freqs[freqs > 0])).sum())
    bigram = bigram_entropy(train, V)
    rate = float(-np.log(true_probs).mean())  # the grammar's own nats per held-out token: no model beats it
    assert rate < bigram - 0.25 < unigram - 1.5  # the grammar rewards memory beyond the previous word

    cfg = ModelConfig(cell=cell, vocab_size=V, hidden=32, embed=32, tie=tie)
    params = init_params(cfg, np.random.default_rng(1))
    opt = make_optimizer("adam", params)
    B, T = 16, 20
    span = (len(train) - 1) // B
    xs = np.stack([train[b * span:(b + 1) * span] for b in range(B)], axis=1)
    ys = np.stack([train[b * span + 1:(b + 1) * span + 1] for b in range(B)], axis=1)
    state, ws, t0 = init_state(cfg, B), {}, 0
    for _ in range(300):
        if t0 + T > span:
            t0, state = 0, init_state(cfg, B)
        loss, grads, state = loss_and_grads(params, cfg, xs[t0:t0 + T], ys[t0:t0 + T], state, workspace=ws)
        t0 += T
        clip_gradients(grads, 5.0)
        opt.step(params, grads, 1e-2)
    nll, _ = forward_nll(params, cfg, held_out[:-1, None], held_out[1:, None], init_state(cfg, 1))
    # A unigram model scores `unigram`, one that reads only the previous word `bigram`; the grammar's rate is
    # the floor. Closing three quarters of the bigram-to-floor gap needs the recurrent state.
    assert nll.mean() < rate + 0.25 * (bigram - rate), (nll.mean(), rate, bigram, unigram)
