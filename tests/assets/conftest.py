"""Fixtures for the asset tests: a throw-away cache for destructive checks, the real cache for the loaders."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from cskd_train import assets  # noqa: E402


@pytest.fixture(scope="session")
def lock() -> assets.Lock:
    return assets.load_lock()


@pytest.fixture(scope="module")
def scratch_cache(tmp_path_factory) -> object:
    """A fresh ``CSKD_CACHE`` shared by one test module (private apt lists are fetched once per module)."""
    return tmp_path_factory.mktemp("cskd-cache")


@pytest.fixture
def use_cache(monkeypatch):
    """Point ``CSKD_CACHE`` at a directory for the duration of one test."""

    def _use(path) -> None:
        monkeypatch.setenv("CSKD_CACHE", str(path))

    return _use
