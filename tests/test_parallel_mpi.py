"""Real data-parallel runs: `charlm train` as 2 MPI ranks under the bundled mpiexec (charlm[mpi], installed by
`make install`), against one process, through kills, interrupts and resumes."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import CHARLM

from charlm.parallel.launch import find_mpiexec
from charlm.store.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # every test runs charlm under mpiexec

MODEL = ["--cell", "lstm", "--hidden", "32", "--layers", "2", "--batch", "8", "--seq-len", "16"]
# Two ranks sum two half-batch gradients where one process sums the whole batch at once: the same
# arithmetic in another order, so each step differs by float32 rounding (~1e-7 relative), which Adam's
# normalised steps carry forward. Over 20 steps that stays far below this bound.
PARAM_TOLERANCE = 1e-5


def mpiexec(n: int) -> list[str]:
    path = find_mpiexec()
    assert path, "mpiexec missing: make install installs charlm[mpi]"
    return [path, "-n", str(n)]


@pytest.fixture
def corpus(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, size=8)) for _ in range(600)) + "\n", encoding="utf-8")
    return path


def train(corpus, out, *args, ranks=2, timeout=120, check=True):
    command = [*(mpiexec(ranks) if ranks > 1 else []), *CHARLM, "train", str(corpus), "--out", str(out),
               *MODEL, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def losses(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error")]


def assert_params_equal(a, b, *, exact: bool):
    assert a.params.keys() == b.params.keys()
    for name in a.params:
        if exact:
            np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
        else:
            np.testing.assert_allclose(a.params[name], b.params[name], rtol=PARAM_TOLERANCE,
                                       atol=PARAM_TOLERANCE, err_msg=name)


def test_two_ranks_train_the_same_model_as_one_process(corpus, tmp_path):
    common = ["--steps", 20, "--eval-every", 20, "--dropout", 0, "--json"]
    one = train(corpus, tmp_path / "one", *common, ranks=1)
    two = train(corpus, tmp_path / "two", *common, ranks=2)
    a = load_checkpoint(tmp_path / "one" / "ckpt-00000020.safetensors")
    b = load_checkpoint(tmp_path / "two" / "ckpt-00000020.safetensors")
    assert_params_equal(a, b, exact=False)
    # the carried state of all 8 streams, gathered from both ranks, and the data position agree too
    for layer_a, layer_b in zip(a.state, b.state, strict=True):
        for x, y in zip(layer_a, layer_b, strict=True):
            assert x.shape == y.shape == (8, 32)
            np.testing.assert_allclose(x, y, rtol=PARAM_TOLERANCE, atol=PARAM_TOLERANCE)
    assert a.train["cursor"] == b.train["cursor"] and b.train["procs"] == 2 and len(b.rng["ranks"]) == 2
    la, lb = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert la.keys() == lb.keys() == set(range(1, 21))
    np.testing.assert_allclose([la[s] for s in la], [lb[s] for s in la], rtol=1e-5)
    assert la[20] < la[1] - 0.3  # it really trained
    done_one, done_two = (json.loads(r.stdout.splitlines()[-1]) for r in (one, two))
    assert done_two["procs"] == 2 and done_two["allreduce_seconds_per_step"] > 0
    assert done_two["best_val_loss"] == pytest.approx(done_one["best_val_loss"], rel=1e-5)
    assert len(two.stdout.splitlines()) == len(one.stdout.splitlines())  # rank 1 printed nothing


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def rank_pid(out: Path, rank: int) -> int:
    """The pid of the charlm rank `rank` training into `out` (read from /proc: the rank's command line and
    the PMI_RANK its launcher gave it)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-m" in cmdline and str(out).encode() in cmdline and f"PMI_RANK={rank}".encode() in env:
            return int(entry.name)
    raise AssertionError(f"no rank {rank} training into {out}")


def start_with_procs(corpus, out, *args) -> subprocess.Popen:
    """A long `charlm train --procs 2` run, left running."""
    return subprocess.Popen([*CHARLM, "train", str(corpus), "--out", str(out), *MODEL, "--steps", "100000",
                             "--procs", "2", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in run.glob("ckpt-*.safetensors"))


def test_kill_and_resume_under_two_ranks_is_bit_exact(corpus, tmp_path):
    steps = ["--dropout", 0.2, "--save-every", 10, "--eval-every", 100]
    train(corpus, tmp_path / "whole", "--steps", 400, *steps)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*mpiexec(2), *CHARLM, "train", str(corpus), "--out", str(killed), *MODEL,
                             "--steps", "400", *map(str, steps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: checkpoint_steps(killed))
    os.kill(rank_pid(killed, 1), signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    resumed_from = checkpoint_steps(killed)[-1]
    assert resumed_from < 400, "the run finished before the kill"
    train(corpus, killed, "--steps", 400, *steps, "--resume")
    whole = load_checkpoint(tmp_path / "whole" / "ckpt-00000400.safetensors")
    again = load_checkpoint(killed / "ckpt-00000400.safetensors")
    assert_params_equal(whole, again, exact=True)
    for name in whole.optim:
        np.testing.assert_array_equal(whole.optim[name], again.optim[name])
    assert whole.rng == again.rng
    la, lb = losses(tmp_path / "whole"), losses(killed)
    assert la == lb  # the log has every step once, with the same losses


def test_sigint_on_rank_one_stops_every_rank_at_one_step_with_one_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    proc = start_with_procs(corpus, out, "--eval-every", 100000)
    wait_for(lambda: (out / "metrics.jsonl").exists() and len(losses(out)) > 20)
    os.kill(rank_pid(out, 1), signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert line.startswith("interrupted (SIGINT): saved step ") and f"--out {out} --procs 2 --resume" in line
    assert error_lines(stderr) == []  # a stop the user asked for is not an error
    [step] = checkpoint_steps(out)
    assert max(losses(out)) == step  # both ranks stopped after the step the checkpoint holds
    ckpt = load_checkpoint(out / f"ckpt-{step:08d}.safetensors")
    assert ckpt.train["step"] == step and len(ckpt.rng["ranks"]) == 2
    assert "charlm-rank" not in stderr and "BAD TERMINATION" not in stderr
    train(corpus, out, "--steps", step + 5, "--resume")
    assert checkpoint_steps(out)[-1] == step + 5


def test_sigkill_of_a_rank_ends_the_run_at_once_with_one_line_naming_it(corpus, tmp_path):
    out = tmp_path / "run"
    proc = start_with_procs(corpus, out, "--save-every", 20)
    wait_for(lambda: checkpoint_steps(out))
    pid = rank_pid(out, 1)
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    [error] = error_lines(stderr)
    assert f"rank 1 (pid {pid}) ended: Killed (signal 9)" in error and "last good checkpoint: ckpt-" in error
    assert "BAD TERMINATION" not in stdout + stderr and "Traceback" not in stderr
    newest = checkpoint_steps(out)[-1]
    load_checkpoint(out / f"ckpt-{newest:08d}.safetensors")  # valid
    train(corpus, out, "--steps", newest + 5, "--resume")


def test_a_resume_with_another_number_of_processes_shares_the_streams_out_again(corpus, tmp_path):
    out = tmp_path / "run"
    train(corpus, out, "--steps", 10, "--eval-every", 10)
    result = train(corpus, out, "--steps", 20, "--eval-every", 10, "--resume", ranks=1)
    assert "resumed a 2-process run in one process" in result.stderr
    assert load_checkpoint(out / "ckpt-00000020.safetensors").state[0][0].shape == (8, 32)


@pytest.mark.parametrize("args, ranks, fragment", [
    (["--batch", "9"], 2, "--batch 9 does not split evenly over 2 processes"),
    (["--task", "truecase"], 2, "--task truecase trains in one process"),
    (["--procs", "2"], 2, "--procs starts its own mpiexec"),
    (["--procs", str(os.cpu_count() + 1)], 1, "is more than this machine's"),
])
def test_usage_errors_are_one_line_from_one_rank(corpus, tmp_path, args, ranks, fragment):
    result = train(corpus, tmp_path / "run", "--steps", 5, *args, ranks=ranks, check=False)
    assert result.returncode == 2, result.stderr
    [error] = error_lines(result.stderr)
    assert fragment in error
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_sigterm_to_the_launcher_reaches_every_rank_once(corpus, tmp_path):
    out = tmp_path / "run"
    proc = start_with_procs(corpus, out, "--eval-every", 100000)
    wait_for(lambda: (out / "metrics.jsonl").exists() and len(losses(out)) > 20)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert line.startswith("interrupted (SIGTERM): saved step ") and "[mpiexec@" not in stderr
    assert error_lines(stderr) == []
    [step] = checkpoint_steps(out)
    assert max(losses(out)) == step


def test_a_failure_on_rank_zero_alone_ends_every_rank_without_a_hang(corpus, tmp_path):
    out = tmp_path / "run"
    (out / "best.safetensors").mkdir(parents=True)  # rank 0's first best checkpoint cannot be written
    result = train(corpus, out, "--steps", 40, "--eval-every", 20, check=False, timeout=60)
    assert result.returncode == 1
    [error] = error_lines(result.stderr)
    assert "could not save checkpoint best.safetensors" in error and "last good checkpoint: ckpt-00000020" in error
    assert "Traceback" not in result.stderr


def test_the_ranks_train_the_model_rank_zero_chose_by_the_recipe(corpus, tmp_path):
    # No width given: rank 0 times the machine, chooses, and the others take its options (a rank that chose
    # another width would fail the first Allreduce).
    out = tmp_path / "run"
    command = [*mpiexec(2), *CHARLM, "train", str(corpus), "--out", str(out), "--batch", "8", "--time", "8s",
               "--json", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    [recipe] = [r for r in records if "recipe" in r]  # said once, by rank 0
    config = json.loads((out / "config.json").read_text())
    assert config["hidden"] == recipe["choices"]["hidden"] == load_checkpoint(out).config.hidden
    assert config["recipe"].startswith(recipe["recipe"])
