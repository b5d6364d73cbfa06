"""Decoding an encoder–decoder: greedy, beam search and sampling, every one batched over inputs.

Sources are sorted by length and decoded in groups (`GROUP` rows at a time, beams and samples counted), so a
file of thousands of lines is a few hundred model steps per group, never a Python loop per input. Rows whose
output has ended leave the batch. `<UNK>` is never written (it stands for no text). An output ends at `<EOS>`
or at the length cap, MAX_RATIO times its source's length plus MAX_EXTRA tokens; an output cut there is marked
`capped`.

Beam search keeps `beam` hypotheses per source; a hypothesis that writes `<EOS>` is finished, scored by its
log-probability divided by its length (the `<EOS>` counted), so short outputs are not favoured just for being
short. A source stops once it has `beam` finished hypotheses or reaches its cap (its live hypotheses then count
as finished, capped); its `nbest` best are returned.
"""

import math
from dataclasses import dataclass

import numpy as np

from charlm.errors import ConfigError
from charlm.models import seq2seq
from charlm.tasks.choosing import check_sampling_options, log_softmax, make_picker, take_rows
from charlm.text.batching import pad_documents
from charlm.text.vocab import EOS, UNK

MAX_RATIO = 3.0
MAX_EXTRA = 10
# Decoder rows per group: sources times beams (or samples).
GROUP = 512


@dataclass(frozen=True)
class Translator:
    """A trained encoder–decoder and its two vocabularies."""

    params: dict
    cfg: object
    source_vocab: object
    target_vocab: object


@dataclass(frozen=True)
class Output:
    """One output: `ids` (n,) without the closing `<EOS>`, its `text`, `logprob` (nats, the `<EOS>` included),
    `score` (logprob per token, the beam's ranking) and `capped` (cut at the length cap, no `<EOS>`)."""

    ids: np.ndarray
    text: str
    logprob: float
    score: float
    capped: bool

    def to_json(self) -> dict:
        return {"output": self.text, "logprob": round(self.logprob, 4), "score": round(self.score, 4),
                "capped": self.capped}


def source_ids(translator: Translator, source: str, where: str = "") -> np.ndarray:
    """A source's ids; an empty source, or one of only unknown tokens, is a ConfigError naming `where` (a
    file:line, or the text itself when empty)."""
    ids = translator.source_vocab.encode(source)
    name = where or repr(source)
    if len(ids) == 0:
        raise ConfigError(f"{name}: the source is empty")
    if np.all(ids == UNK):
        raise ConfigError(f"{name}: every token of the source is unknown to the model "
                          f"({', '.join(map(repr, translator.source_vocab.unknown(source)[:5]))})")
    return ids


def length_cap(n: int) -> int:
    """The most tokens (the `<EOS>` included) decoded for a source of n tokens."""
    return int(math.ceil(MAX_RATIO * n)) + MAX_EXTRA


def _groups(sources: list[np.ndarray], rows_per_source: int):
    """Indices of the sources, sorted by length, in groups whose rows fit GROUP."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    size = max(1, GROUP // rows_per_source)
    for start in range(0, len(order), size):
        yield order[start:start + size]


def _output(translator: Translator, ids, logprob: float, capped: bool) -> Output:
    ids, capped = np.asarray(ids, dtype=np.int64), bool(capped)  # not numpy's bool: the JSON writes it
    return Output(ids, translator.target_vocab.decode(ids), float(logprob),
                  float(logprob) / (len(ids) + (not capped)), capped)  # a capped output has no <EOS> to count


def _choose(logits) -> np.ndarray:
    logprobs = log_softmax(logits)
    logprobs[:, UNK] = -np.inf  # never written
    return logprobs


def generate(translator: Translator, sources: list[np.ndarray], *, samples: int = 1, pick=None) -> list[list[Output]]:
    """`samples` outputs per source, each token chosen by `pick` (log-probabilities (R, U) -> ids (R,);
    None: greedy). -> per source, its outputs."""
    pick = pick or (lambda logprobs: np.argmax(logprobs, axis=1))
    params, cfg = translator.params, translator.cfg
    found: list[list[Output]] = [[] for _ in sources]
    for group in _groups(sources, samples):
        x, lengths = pad_documents([sources[i] for i in group])
        memory, state = seq2seq.encode(params, cfg, x, lengths)
        rows = np.repeat(np.arange(len(group)), samples)  # the group's source of each decoder row
        memory, state = memory.take(rows), take_rows(state, rows)
        caps = np.array([length_cap(n) for n in lengths])[rows]
        written = np.zeros((int(caps.max()), len(rows)), np.int64)
        logprob = np.zeros(len(rows))
        live, ids, step = np.arange(len(rows)), np.full(len(rows), EOS), 0
        ended_at = np.zeros(len(rows), np.int64)
        while len(live):
            logits, state, _ = seq2seq.decode_step(params, cfg, memory, ids, state)
            logprobs = _choose(logits)
            ids = pick(logprobs)
            logprob[live] += logprobs[np.arange(len(live)), ids]
            written[step, live] = ids
            step += 1
            ended = (ids == EOS) | (step >= caps[live])
            ended_at[live[ended]] = step
            if ended.any():
                keep = np.flatnonzero(~ended)
                live, ids = live[keep], ids[keep]
                memory, state = memory.take(keep), take_rows(state, keep)
        for r, source in enumerate(rows):
            n = int(ended_at[r])
            capped = written[n - 1, r] != EOS
            found[group[source]].append(_output(translator, written[:n - (not capped), r], logprob[r], capped))
    return found


def sample(translator: Translator, sources: list[np.ndarray], *, samples: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> list[list[Output]]:
    """`samples` outputs per source drawn from the model (temperature 0: greedy), filtered by top-k / top-p."""
    check_sampling_options(translator.cfg.target_vocab, temperature, top_k, top_p)
    pick = make_picker(np.random.default_rng(seed), temperature=temperature, top_k=top_k, top_p=top_p)
    return generate(translator, sources, samples=samples, pick=pick)


def beam_search(translator: Translator, sources: list[np.ndarray], *, beam: int, nbest: int = 1
                ) -> list[list[Output]]:
    """The `nbest` best outputs per source by beam search with `beam` hypotheses (see the module docstring)."""
    if beam < 1 or not 1 <= nbest <= beam:
        raise ConfigError(f"--beam must be at least 1 and --nbest between 1 and the beam, got {beam} and {nbest}")
    found: list[list[Output]] = [[] for _ in sources]
    for group in _groups(sources, beam):
        for i, outputs in zip(group, _beam_group(translator, [sources[i] for i in group], beam), strict=True):
            found[i] = sorted(outputs, key=lambda o: -o.score)[:nbest]
    return found


def _beam_group(translator: Translator, sources: list[np.ndarray], K: int) -> list[list[Output]]:
    """Beam search over one group of sources: rows are (source, hypothesis) pairs, B * K of them."""
    params, cfg, U = translator.params, translator.cfg, translator.cfg.target_vocab
    x, lengths = pad_documents(sources)
    memory, state = seq2seq.encode(params, cfg, x, lengths)
    B = len(sources)
    caps = np.array([length_cap(n) for n in lengths])
    finished: list[list[Output]] = [[] for _ in range(B)]
    live = np.arange(B)  # the sources still searching
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0  # one hypothesis to start from: the others would repeat it
    history = np.zeros((B, K, 0), np.int64)
    rows = np.repeat(np.arange(B), K)
    memory, state = memory.take(rows), take_rows(state, rows)
    ids = np.full(B * K, EOS)
    for step in range(int(caps.max())):
        logits, state, _ = seq2seq.decode_step(params, cfg, memory, ids, state)
        flat = (scores[:, :, None] + _choose(logits).reshape(len(live), K, U)).reshape(len(live), K * U)
        top = np.argpartition(-flat, 2 * K - 1, axis=1)[:, :2 * K] if K * U > 2 * K else \
            np.broadcast_to(np.arange(K * U), (len(live), K * U))
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(flat, top, axis=1), axis=1, kind="stable"),
                                 axis=1)  # (b, 2K) the best candidates, best first
        ends = top % U == EOS
        for j, rank in zip(*np.nonzero(ends[:, :K]), strict=True):  # an <EOS> among the K best: finished
            k = top[j, rank] // U
            if np.isfinite(flat[j, top[j, rank]]):  # not a hypothesis: a beam wider than the tokens to extend
                finished[live[j]].append(_output(translator, history[j, k], flat[j, top[j, rank]], False))
        # the K best continuations that do not end (at most K of the 2K candidates end, one per hypothesis)
        best = np.take_along_axis(top, np.argsort(ends, axis=1, kind="stable")[:, :K], axis=1)
        scores = np.take_along_axis(flat, best, axis=1)
        parents, tokens = best // U, best % U
        history = np.concatenate([np.take_along_axis(history, parents[:, :, None], axis=1), tokens[:, :, None]],
                                 axis=2)
        at_cap = step + 1 >= caps[live]
        for j in np.flatnonzero(at_cap):
            if len(finished[live[j]]) < K:  # cut at the cap: the live hypotheses count, marked capped
                finished[live[j]] += [_output(translator, history[j, k], scores[j, k], True)
                                      for k in range(K) if np.isfinite(scores[j, k])]
        done = at_cap | np.array([len(finished[s]) >= K for s in live])
        keep = np.flatnonzero(~done)
        if not len(keep):
            break
        row_keep = (keep[:, None] * K + parents[keep]).reshape(-1)  # each kept hypothesis's parent row
        live, scores, history = live[keep], scores[keep], history[keep]
        state = take_rows(state, row_keep)
        if len(keep) < len(done):  # a source's K rows share its memory: only leaving sources change it
            memory = memory.take((keep[:, None] * K + np.arange(K)).reshape(-1))
        ids = tokens[keep].reshape(-1)
    return finished


def attention_of(translator: Translator, source: np.ndarray, output: np.ndarray) -> np.ndarray | None:
    """The attention weights (n + 1, S) the decoder gives each source token while writing `output` (n,) and
    its `<EOS>`; None for a model without attention."""
    params, cfg = translator.params, translator.cfg
    if cfg.attention == "none":
        return None
    memory, state = seq2seq.encode(params, cfg, np.asarray(source)[:, None], [len(source)])
    rows, ids = [], np.array([EOS])
    for token in [*np.asarray(output).tolist(), EOS]:
        _, state, alpha = seq2seq.decode_step(params, cfg, memory, ids, state)
        rows.append(alpha[0])
        ids = np.array([token])
    return np.stack(rows)
