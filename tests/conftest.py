"""Shared fixtures: keep every test's files under tmp_path and its caches out of the home directory, and the
small generated corpus the training tests share."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """The thread count fixed, as a user may fix it: a run's steps must not depend on how many cores the test
    machine has (on several, a run first times its steps at each count). tests/test_threads.py unsets it."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def text_corpus(tmp_path):
    """200 lines of 8 words drawn from 11: a corpus any small model learns something from in a few steps."""
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]
    lines = [" ".join(rng.choice(words, size=8)) for _ in range(200)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
