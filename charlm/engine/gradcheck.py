"""Float64 finite-difference checks of the model's analytic gradients (used by `charlm gradcheck` and tests).

The numeric derivative is the fourth-order central difference
    (f(x - 2h) - 8 f(x - h) + 8 f(x + h) - f(x + 2h)) / 12h,  h = 1e-3,
whose truncation and rounding errors are both near 1e-12 for these smooth losses, so a correct gradient
scores about 1e-9 and a wrong one about 1e-1. A relu RNN uses h = 1e-5 instead: a stencil that straddles
a kink measures nothing, and a narrower one rarely meets one.

The relative error is CS231n's with a floored denominator; the floor is the larger of 1e-5 and 1% of the
tensor's largest |analytic| + |numeric| (an entry far smaller than that measures rounding noise, not the
backward pass; an exactly zero gradient, e.g. under dropout that removes every unit, must match to 1e-11).
"""

from dataclasses import dataclass

from charlm.engine.backend import np
from charlm.models import classifier, tagger
from charlm.models import lm as model
from charlm.models.config import ModelConfig

TOLERANCE = 1e-6


@dataclass(frozen=True)
class CheckResult:
    """One checked tensor: its name, shape, how many coordinates were compared, the max relative error."""

    name: str
    shape: tuple[int, ...]
    checked: int
    error: float

    @property
    def passed(self) -> bool:
        return bool(self.error < TOLERANCE)


def rel_error(analytic, numeric, floor=1e-2, abs_floor=1e-5) -> float:
    """Max over entries of |a - n| / max(|a| + |n|, floor * max(|a| + |n|), abs_floor)."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = np.abs(a) + np.abs(n)
    if scale.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(scale, max(floor * scale.max(), abs_floor))))


def numeric_gradient(f, x, coords, h):
    """Fourth-order central differences of the scalar f() at the given flat coordinates of x (restored)."""
    flat = x.reshape(-1)
    out = np.empty(len(coords))
    for j, i in enumerate(coords):
        old = flat[i]
        values = []
        for k in (-2, -1, 1, 2):
            flat[i] = old + k * h
            values.append(f())
        flat[i] = old
        out[j] = (values[0] - 8.0 * values[1] + 8.0 * values[2] - values[3]) / (12.0 * h)
    return out


def sample_coords(analytic, max_coords: int, rng) -> np.ndarray:
    """Flat coordinates to check in a tensor: all of them when there are at most max_coords, else half (at
    most) drawn among the entries whose analytic gradient is nonzero and the rest uniformly from the others.

    A word-sized table's gradient is zero outside the rows of the ids in the chunk, so uniform coordinates
    would mostly compare zeros; the uniform half still catches a gradient that is wrongly zero.
    """
    n = analytic.size
    if n <= max_coords:
        return np.arange(n)
    nonzero = np.flatnonzero(analytic.reshape(-1))
    chosen = rng.choice(nonzero, min(len(nonzero), max_coords // 2), replace=False)
    others = np.setdiff1d(np.arange(n), chosen)
    return np.sort(np.r_[chosen, rng.choice(others, max_coords - len(chosen), replace=False)])


def check_model(cfg: ModelConfig, *, seq_len: int, batch: int, seed: int = 0, max_coords: int = 30):
    """Compare loss_and_grads' gradients of every parameter and of the initial state with numeric ones.

    Inputs:
    - cfg: the model to check (its dtype is replaced by float64)
    - seq_len, batch: chunk shape (T, B) of the random ids and targets
    - seed: drives the parameters, inputs, initial state, coordinate sample and dropout masks
    - max_coords: tensors larger than this are checked at that many random coordinates (sample_coords)

    Returns a list of CheckResult, parameters first (in param_shapes order), then `state.<layer>.<k>`.
    A tagger (`cfg.heads`) reads documents of random lengths up to seq_len from the zero state, with random
    labels that leave some positions unlabelled; a classifier (`cfg.pool`) texts of random lengths with
    random labels and weights; neither has state to check.
    """
    cfg = ModelConfig(**{**cfg.to_dict(), "dtype": "float64"})
    rng = np.random.default_rng(seed)
    params = (classifier if cfg.pool else tagger if cfg.heads else model).init_params(cfg, rng)
    for name, p in params.items():
        if name.endswith(".b"):
            p += 0.1 * rng.standard_normal(p.shape)  # a generic point, not the symmetric zero bias
    x = rng.integers(0, cfg.vocab_size, (seq_len, batch))
    if cfg.pool:
        lengths = rng.integers(1, seq_len + 1, batch)
        lengths[0] = seq_len
        y = rng.integers(0, cfg.heads[0], batch)
        weights = rng.uniform(0.5, 2.0, batch)
        state = []

        def run():
            loss, grads = classifier.loss_and_grads(params, cfg, x, y, lengths, weights=weights,
                                                    rng=np.random.default_rng(seed + 1))
            return loss, grads, None, []
    elif cfg.heads:
        lengths = rng.integers(1, seq_len + 1, batch)
        lengths[0] = seq_len
        unlabelled = (np.arange(seq_len)[:, None] >= lengths[None, :]) | (rng.random((seq_len, batch)) < 0.2)
        labels = [np.where(unlabelled, tagger.NO_LABEL, rng.integers(0, k, (seq_len, batch))) for k in cfg.heads]
        state = []

        def run():
            loss, grads = tagger.loss_and_grads(params, cfg, x, labels, lengths, rng=np.random.default_rng(seed + 1))
            return loss, grads, None, []
    else:
        y = rng.integers(0, cfg.vocab_size, (seq_len, batch))
        state = [tuple(0.5 * rng.standard_normal(a.shape) for a in layer)
                 for layer in model.init_state(cfg, batch)]

        def run():
            return model.loss_grads_and_dstate(params, cfg, x, y, state, rng=np.random.default_rng(seed + 1))

    _, grads, _, dstate = run()

    def loss():
        return run()[0]

    tensors = [(name, p, grads[name]) for name, p in params.items()]
    tensors += [(f"state.{layer}.{k}", a, dstate[layer][k])
                for layer, arrays in enumerate(state) for k, a in enumerate(arrays)]
    h = 1e-5 if cfg.cell == "rnn" and cfg.activation == "relu" else 1e-3
    results = []
    for name, value, analytic in tensors:
        coords = sample_coords(analytic, max_coords, rng)
        numeric = numeric_gradient(loss, value, coords, h)
        error = rel_error(analytic.reshape(-1)[coords], numeric)
        results.append(CheckResult(name, tuple(value.shape), len(coords), error))
    return results
