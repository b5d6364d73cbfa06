"""Sampling and beam search: N samples advance together as one batch through the model's step function.

The core (`generate_ids`, `beam_search_ids`, choosing by `charlm.tasks.choosing`) works with any
`step(ids (B,), state) -> (logits (B, V), state)` function, so it is tested with hand-made models;
`generate` and `beam_search` bind it to a checkpoint's parameters and vocabulary.

A sample is a document: the model first reads `<EOS>` (the start of a document), then the prime, then
generates tokens (characters or words, as the vocabulary's kind says). A sample ends at `<EOS>` when
`stop_at_eos` (callers pass True in `lines`/`paragraphs` mode), when a stop string appears, or after
`length` generated ids. `<UNK>` is never generated unless `allow_unk`: it stands for no text.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from charlm.errors import ConfigError
from charlm.models.lm import init_state, step_logits
from charlm.tasks.choosing import check_sampling_options, log_softmax, make_picker, take_rows
from charlm.tasks.lm.stops import start_matcher, stop_rule
from charlm.text.tokenizer import EOS, UNK


@dataclass
class Sample:
    """One generated sample.

    - text: the prime followed by the text of the generated ids (a closing `<EOS>` is not part of it)
    - logprob: the model's log-probability (nats; temperature 1, no filtering) of the generated ids,
      including the closing `<EOS>`
    - ended_at_eos: True when the sample was ended by `<EOS>`
    - ids: generated ids, of shape (n,), including the closing `<EOS>`
    """

    text: str
    logprob: float
    ended_at_eos: bool
    ids: np.ndarray

    def to_json(self) -> dict:
        return {"text": self.text, "logprob": self.logprob, "ended_at_eos": self.ended_at_eos}


# ---------------------------------------------------------------------------------------------- core loops


def read_context(step, state, context: np.ndarray):
    """Feed ids (n,) one by one at batch 1; return the last logits (1, V) and the state."""
    logits = None
    for i in np.asarray(context, dtype=np.int64):
        logits, state = step(np.array([i]), state)
    return logits, state


def _without(logprobs: np.ndarray, banned: Sequence[int]) -> np.ndarray:
    """logprobs (B, V) with the banned ids' entries set to -inf (a copy when any id is banned)."""
    if not len(banned):
        return logprobs
    out = logprobs.copy()
    out[:, list(banned)] = -np.inf
    return out


def generate_ids(step, state, context: np.ndarray, *, num_samples: int, length: int, pick,
                 eos_ends: bool, stops=(), banned: Sequence[int] = (), on_step=None):
    """Generate `num_samples` continuations of `context` together as one batch.

    Inputs:
    - step: function (ids (B,), state) -> (logits (B, V), state)
    - state: the initial state for batch 1
    - context: ids read before generating, of shape (n,), n >= 1 (`<EOS>` then the prime)
    - pick: function log-probabilities (B, V) -> ids (B,), see `make_picker`
    - eos_ends: whether generating `<EOS>` ends a sample
    - stops: id sequences that end a sample when generated (matched against the context's tail too), or a
      `charlm.tasks.lm.stops.TextStops` (stop strings matched against the decoded text)
    - banned: ids never generated (their probability is zero before any filtering; `<UNK>` by default in
      `generate`); every other id keeps the model's log-probability in `logprob`
    - on_step: called after every step with (rows, ids, ended): sample indices of the live rows (B,),
      their new ids (B,), and bool (B,) rows that ended with this id
    Returns (ids, logprob, ended_at_eos): a list of N id arrays, float64 (N,), bool (N,).
    Rows that end leave the batch, so the remaining samples run on a smaller batch.
    """
    n = num_samples
    logprob = np.zeros(n)
    ended_at_eos = np.zeros(n, dtype=bool)
    lengths = np.full(n, length)
    out = np.zeros((length, n), dtype=np.int64)
    if length == 0 or n == 0:
        return [out[:0, i] for i in range(n)], logprob, ended_at_eos
    logits, state = read_context(step, state, context)
    one_to_n = np.zeros(n, dtype=np.int64)
    logits, state = logits[one_to_n], take_rows(state, one_to_n)
    rows = np.arange(n)  # sample index of each live batch row
    matcher = start_matcher(stops, context, n)
    for t in range(length):
        logprobs = log_softmax(logits)  # (B, V) the model's, at temperature 1
        ids = np.asarray(pick(_without(logprobs, banned)), dtype=np.int64)
        logprob[rows] += logprobs[np.arange(len(rows)), ids]
        out[t, rows] = ids
        at_eos = (ids == EOS) if eos_ends else np.zeros(len(ids), dtype=bool)
        ended = at_eos | matcher.push(ids)
        ended_at_eos[rows[at_eos]] = True
        lengths[rows[ended]] = t + 1
        if on_step is not None:
            on_step(rows, ids, ended)
        if ended.any():
            live = ~ended
            rows, ids, state = rows[live], ids[live], take_rows(state, live)
            matcher.keep(live)
        if len(rows) == 0 or t == length - 1:
            break
        logits, state = step(ids, state)
    return [out[:lengths[i], i] for i in range(n)], logprob, ended_at_eos


def beam_search_ids(step, state, context: np.ndarray, *, beam: int, length: int, eos_ends: bool,
                    stops=(), banned: Sequence[int] = ()):
    """The most likely continuations of `context` by beam search (deterministic).

    Inputs as `generate_ids`; `beam` live hypotheses are kept per step. A hypothesis is finished when it
    generates `<EOS>` (if eos_ends), completes a stop sequence, or reaches `length` ids. The search stops
    once no live hypothesis can beat the `beam`-th best finished one (log-probabilities only fall).
    Returns up to `beam` tuples (ids (n,), logprob, ended_at_eos), most likely first.
    """
    if length == 0:
        return [(np.zeros(0, dtype=np.int64), 0.0, False)]
    logits, state = read_context(step, state, context)
    history = np.zeros((1, 0), dtype=np.int64)  # (K, t) generated ids of each live hypothesis
    scores = np.zeros(1)
    matcher = start_matcher(stops, context, 1)
    finished = []  # (logprob, order, ids, ended_at_eos)
    for t in range(length):
        cand = scores[:, None] + _without(log_softmax(logits), banned)  # (K, V)
        flat = cand.ravel()
        n_take = min(flat.size, 2 * beam)
        top = np.argpartition(-flat, n_take - 1)[:n_take]
        top = top[np.isfinite(flat[top])]  # banned ids are never candidates
        top = top[np.lexsort((top, -flat[top]))]  # best first, ties by index: deterministic
        parents, ids = np.divmod(top, cand.shape[1])
        history = np.concatenate([history[parents], ids[:, None]], axis=1)
        matcher.keep(parents)
        at_eos = (ids == EOS) if eos_ends else np.zeros(len(ids), dtype=bool)
        ended = at_eos | matcher.push(ids)
        if t == length - 1:
            ended[:] = True
        for j in np.flatnonzero(ended):
            finished.append((flat[top[j]], len(finished), history[j], bool(at_eos[j])))
        live = np.flatnonzero(~ended)[:beam]
        finished.sort(key=lambda f: (-f[0], f[1]))
        del finished[beam:]
        if len(live) == 0 or (len(finished) == beam and finished[-1][0] >= flat[top[live[0]]]):
            break
        history, scores = history[live], flat[top[live]]
        matcher.keep(live)
        state = take_rows(state, parents[live])
        logits, state = step(ids[live], state)
    return [(ids, float(lp), eos) for lp, _, ids, eos in finished]


# ------------------------------------------------------------------------------------ model-bound API


def unit_noun(vocab) -> str:
    """What the vocabulary's tokens are called in messages: "characters" or "tokens"."""
    return "characters" if vocab.kind == "char" else "tokens"


def prime_context(vocab, prime: str) -> np.ndarray:
    """Ids of `<EOS>` then the prime, of shape (1 + n,) int64 (unknown tokens are `<UNK>`, silently)."""
    return np.concatenate([[EOS], np.asarray(vocab.encode(prime), dtype=np.int64)])


def encode_prime(vocab, prime: str, *, strict: bool = False, warn=None) -> np.ndarray:
    """`prime_context`, with one warning (or a ConfigError when strict) naming the prime's unknown tokens."""
    unknown = vocab.unknown(prime)
    if unknown:
        listed = ", ".join(repr(c) for c in unknown)
        noun = unit_noun(vocab)
        if strict:
            raise ConfigError(f"the prime has {noun} outside the vocabulary: {listed}")
        if warn is not None:
            warn(f"the prime has {noun} outside the vocabulary, read as <UNK>: {listed}")
    return prime_context(vocab, prime)


def _bind(params, cfg):
    return lambda ids, state: step_logits(params, cfg, ids, state)


def _sample(vocab, prime: str, context: np.ndarray, ids: np.ndarray, logprob: float,
            ended_at_eos: bool) -> Sample:
    body = ids[:-1] if ended_at_eos else ids
    return Sample(text=prime + vocab.decoder(context=context).feed(body), logprob=float(logprob),
                  ended_at_eos=bool(ended_at_eos), ids=ids)


def generate(params, cfg, vocab, *, num_samples: int = 1, length: int = 200, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, prime: str = "", seed: int | None = None,
             stop=(), stop_at_eos: bool = False, strict: bool = False, allow_unk: bool = False, warn=None,
             on_step=None) -> list[Sample]:
    """Sample `num_samples` texts from a model, all advancing together as one batch.

    - length: maximum generated ids (tokens) per sample (the prime is not counted)
    - temperature, top_k, top_p: see `filter_logits`; temperature 0 is greedy argmax
    - seed: seeds the `np.random.Generator`; the same seed gives the same samples
    - stop: strings that end a sample when generated (kept in its text)
    - stop_at_eos: whether `<EOS>` ends a sample (pass True in lines/paragraphs mode)
    - strict: unknown prime tokens are a ConfigError instead of a warning
    - allow_unk: `<UNK>` may be generated (otherwise it never is, greedy included)
    - warn: called with each warning message
    - on_step: see `generate_ids`
    """
    check_sampling_options(vocab.size, temperature, top_k, top_p, num_samples=num_samples, length=length)
    context = encode_prime(vocab, prime, strict=strict, warn=warn)
    pick = make_picker(np.random.default_rng(seed), temperature=temperature, top_k=top_k, top_p=top_p)
    stops = stop_rule(vocab, stop, prime=prime, context=context, allow_unk=allow_unk, warn=warn)
    ids, logprob, ended = generate_ids(
        _bind(params, cfg), init_state(cfg, 1), context, num_samples=num_samples, length=length, pick=pick,
        eos_ends=stop_at_eos, stops=stops, banned=() if allow_unk else (UNK,), on_step=on_step)
    return [_sample(vocab, prime, context, ids[i], logprob[i], ended[i]) for i in range(num_samples)]


def beam_search(params, cfg, vocab, *, beam: int, length: int = 200, prime: str, stop=(),
                stop_at_eos: bool = False, strict: bool = False, allow_unk: bool = False,
                warn=None) -> list[Sample]:
    """The `beam` most likely continuations of `prime` (deterministic), most likely first."""
    if beam < 1 or length < 0:
        raise ConfigError(f"need a beam width >= 1 and length >= 0, got {beam} and {length}")
    context = encode_prime(vocab, prime, strict=strict, warn=warn)
    stops = stop_rule(vocab, stop, prime=prime, context=context, allow_unk=allow_unk, warn=warn)
    found = beam_search_ids(_bind(params, cfg), init_state(cfg, 1), context, beam=beam, length=length,
                            eos_ends=stop_at_eos, stops=stops, banned=() if allow_unk else (UNK,))
    return [_sample(vocab, prime, context, ids, lp, eos) for ids, lp, eos in found]


def ends_at_eos(data: dict, stop_at_eos: bool) -> bool:
    """Whether `<EOS>` ends a sample of a model whose checkpoint `data` this is: always for a model of lines or
    paragraphs, on request (`stop_at_eos`) for one of a whole file."""
    return stop_at_eos or data.get("eos_mode", "file") != "file"


def sample_model(ckpt, *, num_samples: int, beam: int | None = None, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None, warn=None,
                 on_step=None, **options) -> list[Sample]:
    """`num_samples` samples of a loaded language model: the most likely of a beam search of width `beam` that
    continues the prime (deterministic: temperature, top-k, top-p and seed are ignored, with a warning naming
    those given), or drawn as one batch (`generate`). `options`: prime, length, stop, stop_at_eos, strict and
    allow_unk, as `generate` takes them."""
    if beam is None:
        return generate(ckpt.params, ckpt.config, ckpt.vocab, num_samples=num_samples, temperature=temperature,
                        top_k=top_k, top_p=top_p, seed=seed, warn=warn, on_step=on_step, **options)
    ignored = [name for name, value in (("--temperature", temperature != 1.0), ("--top-k", top_k),
                                        ("--top-p", top_p), ("--seed", seed)) if value]
    if ignored and warn:
        warn(f"{', '.join(ignored)} ignored: beam search is deterministic")
    return beam_search(ckpt.params, ckpt.config, ckpt.vocab, beam=beam, warn=warn, **options)[:num_samples]


class OrderedStream:
    """An `on_step` callback that writes the samples' text in order while they are generated.

    Sample i is written live; once it ends, the text buffered for sample i+1 is written and it continues
    live. The written text equals `separator.join(s.text for s in samples) + "\\n"`.
    """

    def __init__(self, vocab, num_samples: int, prime: str, write, *, eos_ends: bool, separator: str = "\n"):
        # one decoder per sample, as `_sample` decodes it: the text of each id depends on the id before it
        context = prime_context(vocab, prime)
        self.decoders = [vocab.decoder(context=context) for _ in range(num_samples)]
        self.write, self.eos_ends = write, eos_ends
        self.separator, self.prime = separator, prime
        self.pending = ["" for _ in range(num_samples)]
        self.done = [False] * num_samples
        self.current = 0
        write(prime)

    def __call__(self, rows, ids, ended) -> None:
        for row, i, end in zip(rows.tolist(), ids.tolist(), ended.tolist(), strict=True):
            if not (end and self.eos_ends and i == EOS):
                self.pending[row] += self.decoders[row].feed([i])
            self.done[row] = self.done[row] or end
        self._flush()

    def _flush(self) -> None:
        while self.current < len(self.pending):
            self.write(self.pending[self.current])
            self.pending[self.current] = ""
            if not self.done[self.current]:
                return
            self.current += 1
            if self.current < len(self.pending):
                self.write(self.separator + self.prime)

    def finish(self) -> None:
        """Mark every sample ended (the length limit) and write what is left, then the final newline."""
        self.done = [True] * len(self.done)
        self._flush()
        self.write("\n")

