"""The demo's plain-Java core, unit-tested with JUnit on the JVM against golden files from the Python runtime."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.android


def test_junit_suite_passes_against_python_goldens(jvm_build, android_goldens):
    from android_demo.tools.jvm import junit_test_classes, run_junit

    classes = junit_test_classes(jvm_build)
    assert {"org.cskd.demo.core.ImageGoldenTest", "org.cskd.demo.core.ManifestGoldenTest",
            "org.cskd.demo.core.ScoresGoldenTest", "org.cskd.demo.core.JsonTest"} <= set(classes)
    r = run_junit(jvm_build, android_goldens)
    assert r.ok, r.output[-4000:]
    assert r.run >= 15
    # Golden tests must not have been skipped for want of the goldens directory.
    assert "AssumptionViolatedException" not in r.output


def test_junit_catches_a_one_level_tensor_error(jvm_build, android_goldens, tmp_path):
    """A golden tensor off by one 8-bit level in one value must fail the pixel-exact preprocessing test."""
    from android_demo.tools.jvm import run_junit

    bad = tmp_path / "goldens"
    shutil.copytree(android_goldens, bad)
    t = bad / "orient_6.f32"
    x = np.fromfile(t, dtype="<f4")
    x[1234] += np.float32(1 / 255 / 0.224)
    x.tofile(t)
    r = run_junit(jvm_build, bad)
    assert not r.ok
    assert "uprightPixelsAndTensorsMatchPythonForAllEightOrientationsAndModes" in r.output
    assert "orient_6.png" in r.output
