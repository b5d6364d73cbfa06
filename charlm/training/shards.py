"""Which of the global batch's streams a rank carries, and how a checkpoint's streams are shared out again.

Pure functions: no MPI here, so the rules are tested in one process. The global batch of B streams is
split in P contiguous blocks of B / P columns in rank order; a checkpoint always holds all B streams (the
blocks joined in rank order) and every rank's dropout RNG, so it can be resumed by any number of ranks
that divides B.
"""

import numpy as np

from charlm.errors import ConfigError


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
