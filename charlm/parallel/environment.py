"""What the MPI launcher told this process, read from its environment before numpy loads.

No numpy (nor anything that imports it) here: `limit_threads_per_rank` must run before the BLAS library
starts its thread pool, which reads these variables once.
"""

import os

from charlm.training.threads import USER_VARIABLES as THREAD_VARIABLES

# The variables launchers set: MPICH's hydra and Slurm (PMI), Open MPI, and PMIx-based launchers.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
# Set by `charlm train --procs`: each rank first tells its launcher its pid (see `charlm.parallel.launch`).
LAUNCHER_VARIABLE = "CHARLM_LAUNCHER"


def _first_int(names) -> int | None:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def launched_size() -> int:
    """How many processes an MPI launcher started this one among (1 outside a launcher)."""
    return _first_int(SIZE_VARIABLES) or 1


def launched_rank() -> int:
    """This process's rank as its launcher numbered it (0 outside a launcher)."""
    return _first_int(RANK_VARIABLES) or 0


def limit_threads_per_rank() -> None:
    """Under a launcher with several ranks, one BLAS thread per rank unless the user set a thread count:
    ranks sharing a machine's cores each with a full thread pool oversubscribe it and run slower."""
    if launched_size() > 1 and not any(name in os.environ for name in THREAD_VARIABLES):
        for name in THREAD_VARIABLES:
            os.environ[name] = "1"
