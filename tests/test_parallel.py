"""The rules of data-parallel training that need no MPI: how streams are shared out and joined, how a
resume picks each rank's RNG, how the launcher reads its command line and MPICH's output, and how many BLAS
threads a rank gets. The real multi-process runs are in test_parallel_mpi.py."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_one_line_error, invoke

from charlm.errors import ConfigError
from charlm.parallel import launch
from charlm.parallel.launch import OutputFilter, without_procs
from charlm.training.shards import (
    RESTART_EVERY,
    check_divisible,
    join_states,
    rank_rng,
    restart_streams,
    restarting,
    rng_state_for,
    shard_state,
    stream_slice,
)

# What MPICH's hydra printed on stdout when a rank was SIGKILLed (captured from mpich 5.0.2).
MPICH_BANNER = """
===================================================================================
=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES
=   PID 27613 RUNNING AT vm
=   EXIT CODE: 9
=   CLEANING UP REMAINING PROCESSES
=   YOU CAN IGNORE THE BELOW CLEANUP MESSAGES
===================================================================================
YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)
This typically refers to a problem with your application.
Please see the FAQ page for debugging suggestions
"""


@pytest.mark.parametrize("batch, procs", [(8, 1), (8, 2), (12, 3), (64, 4)])
def test_streams_are_contiguous_blocks_covering_the_batch_once(batch, procs):
    columns = np.concatenate([np.arange(batch)[stream_slice(batch, procs, r)] for r in range(procs)])
    assert columns.tolist() == list(range(batch))


@pytest.mark.parametrize("procs", [1, 2, 4])
def test_sharded_state_joins_back_to_the_same_arrays(procs):
    rng = np.random.default_rng(0)
    state = [tuple(rng.standard_normal((8, 5)).astype(np.float32) for _ in range(2)) for _ in range(3)]
    shards = [shard_state(state, procs, r) for r in range(procs)]
    assert all(a.shape == (8 // procs, 5) for shard in shards for layer in shard for a in layer)
    joined = join_states(shards)
    for layer, original in zip(joined, state, strict=True):
        for a, b in zip(layer, original, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_batch_that_does_not_split_evenly_names_both_numbers():
    check_divisible(64, 2)
    with pytest.raises(ConfigError, match=r"--batch 30 .* 4 processes"):
        check_divisible(30, 4)


def test_a_resume_with_as_many_ranks_continues_each_rng_and_otherwise_starts_afresh():
    states = [rank_rng(5, r).bit_generator.state for r in range(2)]
    assert states[0] != states[1]  # ranks draw different dropout masks
    assert rng_state_for({"ranks": states}, rank=1, size=2, seed=5, step=9) == (states[1], True)
    single = np.random.default_rng(5).bit_generator.state
    assert rng_state_for(single, rank=0, size=1, seed=5, step=9) == (single, True)
    fresh, exact = rng_state_for({"ranks": states}, rank=0, size=1, seed=5, step=9)
    assert not exact and fresh == rank_rng(5, 0, 9).bit_generator.state and fresh not in states


def test_the_ranks_command_line_drops_procs_in_both_spellings():
    assert without_procs(["c.txt", "--procs", "2", "--steps", "5"]) == ["c.txt", "--steps", "5"]
    assert without_procs(["c.txt", "--procs=2", "--json"]) == ["c.txt", "--json"]


def test_the_launcher_keeps_rank_lines_and_mpich_banner_to_itself():
    sink = io.StringIO()
    relay = OutputFilter(sink)
    lines = ["step 10: val 2.0\n", "charlm-rank 1 pid 27613;charlm-rank 0 pid 27612;\n", "\n", "done\n",
             "step 20:charlm-rank 2 pid 27614; val 1.5\n", *MPICH_BANNER.splitlines(True)]
    for line in lines:
        relay.feed(line)
    assert sink.getvalue() == "step 10: val 2.0\n\ndone\nstep 20: val 1.5\n"
    assert relay.pids == {27613: 1, 27612: 0, 27614: 2}
    assert relay.dead_pid == 27613 and relay.exit_string == "Killed (signal 9)"


def test_procs_beyond_the_cores_or_without_mpi4py_are_usage_errors(monkeypatch):
    cores = launch.usable_cores()
    with pytest.raises(ConfigError, match=f"--procs {cores + 1} is more than this machine's {cores} cores"):
        launch.check_procs(cores + 1)
    monkeypatch.setattr(launch, "mpi_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'charlm\[mpi\]'"):
        launch.check_procs(1)


THREADS = "import os; from charlm.parallel.environment import limit_threads_per_rank as f; f(); " \
          "print(os.environ.get('OPENBLAS_NUM_THREADS'), os.environ.get('OMP_NUM_THREADS'))"


@pytest.mark.parametrize("env, expected", [
    ({"PMI_SIZE": "2"}, "1 1"),  # a rank of two: one thread each
    ({"PMI_SIZE": "1"}, "None None"),  # alone: the library's default
    ({"OMPI_COMM_WORLD_SIZE": "4"}, "1 1"),
    ({"PMI_SIZE": "2", "OMP_NUM_THREADS": "2"}, "None 2"),  # the user's choice wins
])
def test_a_rank_gets_one_blas_thread_unless_told_otherwise(env, expected):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "OMP_NUM_THREADS",
                          "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", THREADS], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == expected


@pytest.mark.parametrize("flags, fragments", [
    (["--batch", "63"], ("--batch 63 does not split evenly over 2 processes",)),
    (["--task", "classify"], ("--task classify trains in one process",)),
])
def test_what_several_processes_cannot_train_is_refused_before_the_probe_or_the_recipe(tmp_path, monkeypatch,
                                                                                       flags, fragments):
    # Refused before anything runs: nothing is launched, timed or printed but the one line.
    launched = []
    monkeypatch.setattr(launch, "launch", lambda *args, **kwargs: launched.append(args) or 0)
    corpus = tmp_path / "c.txt"
    corpus.write_text("positive\tsome text\n" * 50, encoding="utf-8")
    result = invoke("train", corpus, "--procs", "2", "--out", tmp_path / "run", *flags)
    assert_one_line_error(result, 2, *fragments, alone=True)
    assert launched == [] and not (tmp_path / "run").exists()


def test_every_stream_starts_cold_once_in_restart_every_steps_and_ranks_agree_with_one_process():
    batch = 64
    streams = np.arange(batch)
    cold = np.array([restarting(step, streams) for step in range(RESTART_EVERY * 3)])  # (steps, B)
    assert (cold.sum(axis=0) == 3).all()  # each stream once per RESTART_EVERY steps
    assert (cold.sum(axis=1) == batch // RESTART_EVERY).all()  # the streams in turn, never all at once
    for procs in (2, 4):  # a rank's streams restart when the same streams of one process do
        for rank in range(procs):
            block = stream_slice(batch, procs, rank)
            for step in range(40):
                np.testing.assert_array_equal(restarting(step, streams[block]), restarting(step, streams)[block])


def test_a_cold_stream_gets_the_zero_state_and_the_others_keep_theirs():
    rng = np.random.default_rng(0)
    state = [(rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32))]
    cold = np.array([False, True, False, False])
    [(a, c)] = restart_streams(state, cold)
    assert a.dtype == np.float32 and not a[1].any() and not c[1].any()
    np.testing.assert_array_equal(a[[0, 2, 3]], state[0][0][[0, 2, 3]])
    np.testing.assert_array_equal(c[[0, 2, 3]], state[0][1][[0, 2, 3]])
    assert restart_streams(state, np.zeros(4, dtype=bool)) is state  # nothing cold: nothing copied
