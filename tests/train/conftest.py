"""Shared fixture: the tiny end-to-end CSKD run (cfa -> teacher -> skd), trained once per test session."""

from __future__ import annotations

import pytest

from tests.train.synth import build_data, run_pipeline


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    return build_data(tmp_path_factory.mktemp("cskd-train-data"))


@pytest.fixture(scope="session")
def pipeline(synth_root):
    """Final checkpoints of the one-process run (``run.out`` under the data folder)."""
    return run_pipeline(synth_root, "single")
