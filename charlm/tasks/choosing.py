"""How the next token is chosen from a model's scores: log-softmax, the sampling filters (temperature, top-k,
top-p), drawing, greedy picking, and taking batch rows of a state; shared by the language model's sampling
(`charlm.tasks.lm.sampling`) and the encoder–decoder's decoding (`charlm.tasks.translate.decoding`)."""

import math

import numpy as np

from charlm.errors import ConfigError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (the row max is subtracted first), of shape (B, V)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class SamplingOptionError(ConfigError):
    """A sampling option out of its range. `option` is its keyword name, `reason` why, worded to follow the
    option's name: the message is both, and `charlm sample` shows the reason after its flag."""

    def __init__(self, option: str, reason: str):
        super().__init__(f"{option} {reason}")
        self.option, self.reason = option, reason


def check_sampling_options(vocab_size: int | None, temperature: float = 1.0, top_k: int | None = None,
                           top_p: float | None = None, *, num_samples: int = 1, length: int = 0) -> None:
    """Raise SamplingOptionError for the first option out of its range: a temperature < 0 or not finite, top-k
    below 1 or above the vocabulary size V, top-p outside (0, 1], num_samples < 1, length < 0. With `vocab_size`
    None (no model loaded yet) top-k's upper bound is left to a later call that knows it."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise SamplingOptionError("temperature", f"must be a finite number >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise SamplingOptionError("top_k", f"must be at least 1, got {top_k}")
    if top_k is not None and vocab_size is not None and top_k > vocab_size:
        raise SamplingOptionError("top_k", f"must be between 1 and the vocabulary size {vocab_size}, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:  # NaN is refused too
        raise SamplingOptionError("top_p", f"must be in (0, 1], got {top_p}")
    if num_samples < 1:
        raise SamplingOptionError("num_samples", f"must be at least 1, got {num_samples}")
    if length < 0:
        raise SamplingOptionError("length", f"must be at least 0, got {length}")


def filter_logits(logits: np.ndarray, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    """Log-probabilities of the sampling distribution: logits / temperature, then top-k, then top-p.

    Inputs:
    - logits: scores, of shape (B, V)
    - temperature: > 0 (0, greedy, is handled by `make_picker`)
    - top_k: keep the k most likely ids of each row
    - top_p: keep the smallest set of most likely ids whose probability mass is >= top_p
    Returns float64 log-probabilities of shape (B, V), normalised per row, -inf where dropped.
    """
    z = np.asarray(logits, dtype=np.float64)
    z = (z - z.max(axis=1, keepdims=True)) / temperature  # <= 0, so a tiny temperature cannot overflow
    if top_k is not None and top_k < z.shape[1]:
        best = np.argpartition(-z, top_k - 1, axis=1)[:, :top_k]  # (B, k)
        keep = np.zeros(z.shape, dtype=bool)
        np.put_along_axis(keep, best, True, axis=1)
        z = np.where(keep, z, -np.inf)
    lp = log_softmax(z)
    if top_p is not None and top_p < 1:
        order = np.argsort(-lp, axis=1, kind="stable")  # (B, V) most likely first
        p_sorted = np.exp(np.take_along_axis(lp, order, axis=1))
        mass_before = np.cumsum(p_sorted, axis=1) - p_sorted
        mass_before[:, 0] = 0.0
        keep = np.empty(z.shape, dtype=bool)
        np.put_along_axis(keep, order, mass_before < top_p, axis=1)
        lp = log_softmax(np.where(keep, lp, -np.inf))
    return lp


def draw(logprobs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One id per row from the categorical distributions exp(logprobs) (B, V); never a zero-probability id.

    The id is the first with cdf > u for u = r * total, r uniform in [0, 1 - 2**-53]; the rounded product
    is always below the total, so cdf[id - 1] <= u < cdf[id] and the chosen id has probability > 0.
    """
    cdf = np.cumsum(np.exp(logprobs), axis=1)  # (B, V)
    u = rng.random(len(cdf)) * cdf[:, -1]
    return (cdf <= u[:, None]).sum(axis=1)


def make_picker(rng: np.random.Generator, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None):
    """A function log-probabilities (B, V) -> ids (B,): argmax when temperature is 0, else a filtered draw.

    The input may be logits shifted by any per-row constant as long as exp() of them cannot overflow
    (`generate_ids` passes the model's log-softmax).
    """
    if temperature == 0:
        return lambda logprobs: np.argmax(logprobs, axis=1)
    if temperature == 1 and top_k is None and (top_p is None or top_p >= 1):
        return lambda logprobs: draw(logprobs, rng)
    return lambda logprobs: draw(filter_logits(logprobs, temperature=temperature, top_k=top_k, top_p=top_p),
                                 rng)


def take_rows(state, rows: np.ndarray):
    """Select batch rows of a state made of nested lists/tuples of (B, ...) arrays (None stays None)."""
    if state is None:
        return None
    if isinstance(state, (list, tuple)):
        return type(state)(take_rows(s, rows) for s in state)
    return state[rows]
