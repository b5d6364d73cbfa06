"""Locking: one trainer per run directory, and readers never see a torn file.

A real trainer subprocess saves a step checkpoint every step and a new `best.safetensors` at every evaluation
(every step in these tests). Meanwhile a second `charlm train` on the same directory must refuse at once naming the
trainer's PID and touch nothing, and readers (`load_checkpoint` in a loop, and `charlm sample RUN_DIR`
processes) must always get a complete, valid checkpoint without warnings.
"""

import hashlib
import os
import subprocess
import time

import numpy as np
import pytest
from helpers import CHARLM, charlm_env

from charlm.store.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # every test runs charlm processes

SMALL = ["--cell", "gru", "--hidden", "16", "--layers", "1", "--batch", "4", "--seq-len", "16"]


@pytest.fixture
def trainer(tmp_path):
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words, size=6)) for _ in range(400)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    proc = subprocess.Popen([*CHARLM, "train", str(corpus), "--out", str(out), *SMALL,
                             "--steps", "100000", "--save-every", "1", "--eval-every", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=charlm_env())
    deadline = time.monotonic() + 60
    while not (out / "best.safetensors").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read()
    yield proc, corpus, out
    proc.terminate()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr  # SIGTERM: clean save, then 128 + 15
    assert "Traceback" not in stderr


def _digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("*.safetensors")}


def test_second_trainer_refuses_at_once_naming_the_pid(trainer):
    proc, corpus, out = trainer
    os.kill(proc.pid, 19)  # SIGSTOP: freeze the trainer so the directory can be compared before and after
    try:
        before = _digest(out), sorted(p.name for p in out.iterdir())
        fresh_cache = out.parent / "second-cache"
        second = subprocess.run([*CHARLM, "train", str(corpus), "--out", str(out), *SMALL,
                                 "--steps", "5"], capture_output=True, text=True,
                                env=dict(charlm_env(), CHARLM_CACHE_DIR=str(fresh_cache)), timeout=60)
        after = _digest(out), sorted(p.name for p in out.iterdir())
    finally:
        os.kill(proc.pid, 18)  # SIGCONT
    assert second.returncode == 1, second.stderr
    assert second.stdout == "" and "Traceback" not in second.stderr
    assert f"in use by another charlm train (pid {proc.pid})" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert not fresh_cache.exists()  # refused at start-up: the corpus was not even encoded
    assert before == after  # nothing touched: not the checkpoints, not the trainer's temp files
    resumed = subprocess.run([*CHARLM, "train", str(corpus), "--out", str(out), "--resume"],
                             capture_output=True, text=True, env=charlm_env(), timeout=60)
    assert resumed.returncode == 1 and f"pid {proc.pid}" in resumed.stderr


def test_readers_always_see_a_complete_checkpoint_while_training(trainer):
    proc, corpus, out = trainer
    steps = set()
    warnings = []
    deadline = time.monotonic() + 60  # bounds the wait only; the loop ends once the files have been replaced
    while len(steps) <= 20 and time.monotonic() < deadline:
        for prefer in ("best", "latest"):
            ckpt = load_checkpoint(out, prefer=prefer, warn=warnings.append)
            steps.add(ckpt.train["step"])
    assert not warnings, warnings[:3]
    assert len(steps) > 20, steps  # the files really were being replaced while we read them
    for _ in range(4):
        sample = subprocess.run([*CHARLM, "sample", str(out), "-l", "50", "--seed", "1"],
                                capture_output=True, text=True, env=charlm_env(), timeout=60)
        assert sample.returncode == 0, sample.stderr
        assert "warning" not in sample.stderr and "Traceback" not in sample.stderr
        assert len(sample.stdout) >= 1
    assert proc.poll() is None
