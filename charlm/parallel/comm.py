"""The MPI communicator charlm's ranks train over (mpi4py), and the rules for ending a job.

Finalising MPI is collective, so a rank that leaves alone (an error only it met) must exit *without* it:
the launcher then sees a rank end early and stops the others at once, where a finalising rank would wait
for peers blocked in a collective forever. `connect` therefore turns mpi4py's automatic finalisation off,
and `finish` finalises on the paths every rank takes together (success, divergence, an interrupt).
"""

import importlib.util

from charlm.errors import CharlmError, ConfigError

INSTALL_HINT = "pip install 'charlm[mpi]' (mpi4py and MPICH)"


def mpi_available() -> bool:
    return importlib.util.find_spec("mpi4py") is not None


def connect():
    """MPI's world communicator (initialising MPI); a usage error naming what to install without mpi4py."""
    if not mpi_available():
        raise ConfigError(f"multi-process training needs mpi4py: {INSTALL_HINT}")
    import mpi4py

    mpi4py.rc.finalize = False
    from mpi4py import MPI

    return MPI.COMM_WORLD


def in_place():
    """MPI's marker for a collective that works in the receive buffer (no second copy)."""
    from mpi4py import MPI

    return MPI.IN_PLACE


def finish() -> None:
    """Finalise MPI; only on an ending every rank reaches at the same step."""
    from mpi4py import MPI

    if MPI.Is_initialized() and not MPI.Is_finalized():
        MPI.Finalize()


def agree(comm, error: CharlmError | None) -> None:
    """A collective check after work any rank may fail alone (loading files, opening the run directory):
    every rank learns of the first failure, so all stop together instead of the others waiting for it.
    Raises that failure on every rank: the failing rank's own exception, a CharlmError naming the rank on
    the others (marked `quiet` but on rank 0, which says it once)."""
    failure = None if error is None else (str(error), getattr(error, "exit_code", 1))
    failures = comm.allgather(failure)
    for rank, found in enumerate(failures):
        if found is None:
            continue
        if error is not None and rank == comm.rank:
            error.quiet = rank != 0
            raise error
        exc = CharlmError(found[0] if rank == 0 else f"rank {rank}: {found[0]}")
        exc.exit_code = found[1]
        exc.quiet = comm.rank != 0
        raise exc
