"""Shared fixtures: keep every test's files under tmp_path and its caches out of the home directory."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLM_CACHE_DIR", str(tmp_path / "cache"))
