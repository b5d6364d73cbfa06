"""Which of the global batch's streams a rank carries, when a stream starts cold, and how a checkpoint's
streams are shared out again.

Pure functions: no MPI here, so the rules are tested in one process. The global batch of B streams is
split in P contiguous blocks of B / P columns in rank order; a checkpoint always holds all B streams (the
blocks joined in rank order) and every rank's dropout RNG, so it can be resumed by any number of ranks
that divides B.
"""

import numpy as np

from charlm.errors import ConfigError

# Every stream starts from the zero state once in RESTART_EVERY steps, the streams in turn (stream b at the
# steps s with (s + b) % RESTART_EVERY == 0). A sample starts from the zero state too, and a model that never
# reads from it there (streams that carry their state for a whole epoch) can answer a prime such as "ROMEO:"
# with noise; a restart now and then teaches it, and costs a stream at most a few dozen tokens of context in
# every RESTART_EVERY chunks.
RESTART_EVERY = 32


def restarting(step: int, streams: np.ndarray) -> np.ndarray:
    """Which of the global streams `streams` (their indices, (B',)) start cold at `step`: bool (B',)."""
    return (step + streams) % RESTART_EVERY == 0


def restart_streams(state: list, cold: np.ndarray) -> list:
    """The carried state (per layer, a tuple of (B, H) arrays) with the `cold` rows (bool (B,)) set to zero."""
    if not cold.any():
        return state
    return [tuple(np.where(cold[:, None], 0, a) for a in layer) for layer in state]  # 0 keeps a's dtype


def check_divisible(batch: int, procs: int) -> None:
    """The global batch must split evenly: every rank then averages over the same number of tokens, and the
    mean of the ranks' mean losses is the global batch's mean loss."""
    if batch % procs:
        raise ConfigError(f"--batch {batch} does not split evenly over {procs} processes; choose a --batch "
                          f"divisible by {procs} (e.g. {procs * max(1, round(batch / procs))})")


def stream_slice(batch: int, procs: int, rank: int) -> slice:
    """The columns of a (T, B) batch that `rank` of `procs` trains on."""
    width = batch // procs
    return slice(rank * width, (rank + 1) * width)


def shard_state(state: list, procs: int, rank: int) -> list:
    """A rank's share of a carried state: per layer, each (B, H) array cut to its (B / P, H) rows."""
    return [tuple(np.ascontiguousarray(a[stream_slice(len(a), procs, rank)]) for a in layer) for layer in state]


def join_states(shards: list[list]) -> list:
    """The carried state of all streams from every rank's share, in rank order (inverse of shard_state)."""
    return [tuple(np.concatenate(arrays) for arrays in zip(*layers, strict=True))
            for layers in zip(*shards, strict=True)]


def rank_rng(seed: int, rank: int, step: int = 0) -> np.random.Generator:
    """A rank's dropout RNG: independent streams from (seed, rank), and from the step when a resume with a
    different number of ranks starts them afresh."""
    return np.random.default_rng((seed, rank, step))


def rng_state_for(saved: dict, *, rank: int, size: int, seed: int, step: int) -> tuple[dict, bool]:
    """The dropout RNG state `rank` of `size` resumes with, from a checkpoint's `rng`: one bit-generator
    state (one process) or {"ranks": [state per rank]}. -> (state, exact): exact when the checkpoint was
    written by as many processes; otherwise a fresh state from (seed, rank, step)."""
    ranks = saved["ranks"] if "ranks" in saved else [saved]
    if len(ranks) == size:
        return ranks[rank], True
    return rank_rng(seed, rank, step).bit_generator.state, False
