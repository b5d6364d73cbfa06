"""What the tests share for running charlm: in-process through click's CliRunner, as a real process, and the
check that a failure is one readable line.

    from helpers import CHARLM, assert_one_line_error, charlm_env, invoke, run_charlm
"""

import os
import subprocess
import sys

from click.testing import CliRunner, Result

from charlm.cli.main import cli

# The real command line of this venv's charlm: its Python running the installed package. `-m` (not the
# console script) so that a rank's command line shows `-m` (test_parallel_mpi.py finds ranks by it).
CHARLM = [sys.executable, "-m", "charlm"]

# The variables that keep numpy's BLAS (and any OpenMP) in a subprocess to one thread: the machines have 2
# cores, shared by the test process, the subprocess and often an MPI rank.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def invoke(*args, input=None, **kwargs) -> Result:
    """`charlm ARGS...` in this process through click's CliRunner: arguments may be paths or numbers; `input`
    is stdin; other keywords (env, catch_exceptions, ...) go to CliRunner.invoke. `result.stdout`,
    `result.stderr` and `result.output` (both, interleaved) are kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, **kwargs)


def charlm_env(*, threads: int | None = 1, **extra: str) -> dict[str, str]:
    """A copy of os.environ for a charlm subprocess: BLAS/OpenMP limited to `threads` (None: left as they are),
    then `extra` (e.g. CHARLM_CACHE_DIR=..., TERM=...). The per-test CHARLM_CACHE_DIR that conftest.py sets
    in os.environ is inherited."""
    env = dict(os.environ)
    if threads is not None:
        env.update({name: str(threads) for name in ONE_THREAD})
    env.update(extra)
    return env


def charlm_command(*args) -> list[str]:
    """The argv of a real `charlm ARGS...` process (arguments may be paths or numbers)."""
    return [*CHARLM, *map(str, args)]


def run_charlm(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run `charlm ARGS...` as a real process and wait: text mode, stdout and stderr captured unless a keyword
    redirects one of them; other keywords (env, input, cwd, ...) go to subprocess.run."""
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    kwargs.setdefault("text", True)
    return subprocess.run(charlm_command(*args), timeout=timeout, **kwargs)


def assert_one_line_error(result, code: int | None = None, *fragments: str, alone: bool = False) -> str:
    """A failure told in one readable line; returns that line.

    `result` is a CliRunner Result or a CompletedProcess (text mode). Checks: a non-zero exit (exactly `code`
    if given); nothing on stdout; no traceback anywhere; for CliRunner, no exception other than SystemExit
    escaped; exactly one line of stderr starts with `Error`, and it holds every fragment. With `alone`, that
    line is all there is on stderr (no click usage lines, no warnings or seed before it)."""
    exit_code = result.exit_code if isinstance(result, Result) else result.returncode
    everything = result.output if isinstance(result, Result) else result.stdout + result.stderr
    assert exit_code != 0, everything
    if code is not None:
        assert exit_code == code, everything
    assert result.stdout == "", result.stdout
    assert "Traceback" not in everything, everything
    if isinstance(result, Result):
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    if alone:
        assert [line for line in result.stderr.splitlines() if line.strip()] == [result.stderr.strip()], result.stderr
        assert result.stderr.startswith("Error"), result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]
