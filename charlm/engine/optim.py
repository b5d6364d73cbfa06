"""Optimisers as in-place updates over a flat parameter dict, and gradient clipping.

Every optimiser keeps its slots (Adam moments, RMSprop/Adagrad accumulators, momentum) as arrays keyed
`"<slot>/<param name>"` so a checkpoint can store them beside the parameters and a resumed run continues
bit for bit. Updates write into preallocated scratch buffers: no temporaries in the training loop.
"""

import math

from charlm.engine.backend import np

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")


def _decays(name: str, array: np.ndarray) -> bool:
    """Weight decay applies to matrices only: decaying biases and gains only hurts."""
    return array.ndim >= 2


class Optimizer:
    """Base class: subclasses declare their slots and implement `_update` for one parameter."""

    slots: tuple[str, ...] = ()

    def __init__(self, params: dict, *, weight_decay: float = 0.0):
        self.weight_decay = weight_decay
        self.steps = 0
        self.state = {
            f"{slot}/{name}": np.zeros_like(p) for slot in self.slots for name, p in params.items()
        }
        self._scratch = {name: np.empty_like(p) for name, p in params.items()}

    def step(self, params: dict, grads: dict, lr: float, rates: dict | None = None) -> None:
        """Apply one update in place. `grads` may be modified (it is scratch space for the caller). `rates`: a
        multiple of `lr` for the parameters it names (the others take `lr` itself)."""
        self.steps += 1
        rates = rates or {}
        for name, p in params.items():
            self._update(name, p, grads[name], lr * rates.get(name, 1.0))

    def _add_l2(self, name, p, g):
        # Classic L2 regularisation: the penalty's gradient joins the loss gradient.
        if self.weight_decay and _decays(name, p):
            g += self.weight_decay * p

    def state_arrays(self) -> dict:
        return dict(self.state)

    def load_state_arrays(self, arrays: dict, steps: int) -> None:
        missing = set(self.state) - set(arrays)
        extra = set(arrays) - set(self.state)
        if missing or extra:
            raise ValueError(f"optimiser slots differ (missing {sorted(missing)}, extra {sorted(extra)})")
        for key, value in arrays.items():
            if value.shape != self.state[key].shape:
                raise ValueError(f"optimiser slot {key} has shape {value.shape}, expected "
                                 f"{self.state[key].shape}")
            np.copyto(self.state[key], value)
        self.steps = steps


class SGD(Optimizer):
    """p -= lr * (g + wd p), with heavy-ball momentum when momentum > 0."""

    def __init__(self, params, *, momentum=0.0, weight_decay=0.0):
        self.slots = ("momentum",) if momentum else ()
        self.momentum = momentum
        super().__init__(params, weight_decay=weight_decay)

    def _update(self, name, p, g, lr):
        self._add_l2(name, p, g)
        if self.momentum:
            buf = self.state[f"momentum/{name}"]
            buf *= self.momentum
            buf += g
            g = buf
        tmp = self._scratch[name]
        np.multiply(g, lr, out=tmp)
        p -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; `decoupled=True` gives AdamW (Loshchilov & Hutter)."""

    slots = ("m", "v")

    def __init__(self, params, *, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, weight_decay=weight_decay)
        self.beta1, self.beta2, self.eps, self.decoupled = beta1, beta2, eps, decoupled

    def step(self, params, grads, lr, rates=None):
        # Fold both bias corrections into one step size and one epsilon (same maths, two fewer passes).
        t = self.steps + 1
        self._correction = math.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        self._eps_t = self.eps * math.sqrt(1 - self.beta2**t)
        super().step(params, grads, lr, rates)

    def _update(self, name, p, g, lr):
        if self.decoupled:
            if self.weight_decay and _decays(name, p):
                p *= 1 - lr * self.weight_decay
        else:
            self._add_l2(name, p, g)
        m, v, tmp = self.state[f"m/{name}"], self.state[f"v/{name}"], self._scratch[name]
        m *= self.beta1
        np.multiply(g, 1 - self.beta1, out=tmp)
        m += tmp
        v *= self.beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.beta2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += self._eps_t
        np.divide(m, tmp, out=tmp)
        tmp *= lr * self._correction
        p -= tmp


class RMSprop(Optimizer):
    """RMSprop as in char-rnn: running mean of g^2 with decay 0.95."""

    slots = ("sq",)

    def __init__(self, params, *, decay=0.95, eps=1e-8, weight_decay=0.0):
        super().__init__(params, weight_decay=weight_decay)
        self.decay, self.eps = decay, eps

    def _update(self, name, p, g, lr):
        self._add_l2(name, p, g)
        sq, tmp = self.state[f"sq/{name}"], self._scratch[name]
        sq *= self.decay
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.decay
        sq += tmp
        np.sqrt(sq, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        p -= tmp


class Adagrad(Optimizer):
    """Adagrad as in min-char-rnn: accumulated g^2 scales each coordinate's step."""

    slots = ("sum",)

    def __init__(self, params, *, eps=1e-8, weight_decay=0.0):
        super().__init__(params, weight_decay=weight_decay)
        self.eps = eps

    def _update(self, name, p, g, lr):
        self._add_l2(name, p, g)
        acc, tmp = self.state[f"sum/{name}"], self._scratch[name]
        np.multiply(g, g, out=tmp)
        acc += tmp
        np.sqrt(acc, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        p -= tmp


def make_optimizer(name: str, params: dict, *, momentum: float = 0.0, weight_decay: float = 0.0):
    """Build the optimiser called `name` (one of OPTIMIZERS) with zeroed slots shaped like `params`."""
    if name == "adam":
        return Adam(params, weight_decay=weight_decay)
    if name == "adamw":
        return Adam(params, weight_decay=weight_decay, decoupled=True)
    if name == "sgd":
        return SGD(params, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return RMSprop(params, weight_decay=weight_decay)
    if name == "adagrad":
        return Adagrad(params, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def global_norm(grads: dict) -> float:
    """sqrt of the sum of squares of every gradient.

    Each tensor's sum of squares is one dot product in the tensor's own dtype (float32 in training), and the
    per-tensor sums are added in float64. Clipping needs only a few significant digits; a float32 square
    beyond float32's range (|g| above ~1e19) makes the norm inf, which the trainer reports as divergence.
    """
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        total += float(np.dot(flat, flat))
    return math.sqrt(total)


def clip_gradients(grads: dict, clip: float, mode: str = "norm") -> float:
    """Clip in place and return the global norm measured before clipping (NaN stays visible).

    mode "norm" rescales all gradients together when their global norm exceeds `clip`; mode "value"
    clamps each coordinate to [-clip, clip] (the lecture's elementwise clip). clip <= 0 disables.
    """
    norm = global_norm(grads)
    if clip <= 0 or not math.isfinite(norm):
        return norm
    if mode == "norm":
        if norm > clip:
            scale = clip / norm
            for g in grads.values():
                g *= scale
    elif mode == "value":
        for g in grads.values():
            np.clip(g, -clip, clip, out=g)
    else:
        raise ValueError(f"unknown clip mode {mode!r}")
    return norm
