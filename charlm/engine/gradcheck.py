"""Float64 finite-difference checks of analytic gradients: the numerics, for any function of arrays (a
whole model's check is `charlm.models.gradcheck.check_model`).

The numeric derivative is the fourth-order central difference
    (f(x - 2h) - 8 f(x - h) + 8 f(x + h) - f(x + 2h)) / 12h,  h = 1e-3,
whose truncation and rounding errors are both near 1e-12 for these smooth losses, so a correct gradient
scores about 1e-9 and a wrong one about 1e-1. A function with kinks (a relu) needs a smaller h: a stencil
that straddles a kink measures nothing, and a narrower one rarely meets one.

The relative error is CS231n's with a floored denominator; the floor is the larger of 1e-5 and 1% of the
tensor's largest |analytic| + |numeric| (an entry far smaller than that measures rounding noise, not the
backward pass; an exactly zero gradient, e.g. under dropout that removes every unit, must match to 1e-11).
"""

from dataclasses import dataclass

from charlm.engine.backend import np

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


def check_tensors(loss, tensors, *, rng, h: float = 1e-3, max_coords: int = 30) -> list[CheckResult]:
    """Compare analytic gradients with numeric ones.

    loss: a function of no arguments returning the scalar loss at the tensors' current values
    tensors: (name, value array (perturbed in place, then restored), analytic gradient of the same shape)
    rng: draws the coordinates checked in tensors larger than max_coords (see sample_coords)
    h: the step of the central differences
    """
    results = []
    for name, value, analytic in tensors:
        coords = sample_coords(analytic, max_coords, rng)
        numeric = numeric_gradient(loss, value, coords, h)
        error = rel_error(analytic.reshape(-1)[coords], numeric)
        results.append(CheckResult(name, tuple(value.shape), len(coords), error))
    return results
