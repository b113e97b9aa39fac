"""Android demo fixtures: the pinned toolchain, golden files, the compiled Java core and the built APK.

Every fixture is session-scoped: the toolchain is fetched once (cached in ``~/.cache/cskd/android``), the goldens
are written by the Python runtime from the same ``mv2_onnx`` model the JVM and the APK then use.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def android_toolchain():
    """The fetched toolchain; skips (naming the package) only if a pinned source has vanished."""
    from android_demo.tools import fetch
    from android_demo.tools.toolchain import Toolchain

    try:
        return Toolchain.ensure()
    except fetch.SourceVanished as exc:
        pytest.skip(f"a pinned Android dependency is no longer served by its registry: {exc}")


@pytest.fixture(scope="session")
def android_goldens(mv2_onnx, real_photos, tmp_path_factory) -> Path:
    """Golden files written by the Python runtime (Pillow, numpy, onnxruntime) from ``mv2_onnx``."""
    from android_demo.tools.goldens import write_goldens

    return write_goldens(tmp_path_factory.mktemp("goldens"), mv2_onnx, real_photos).parent


@pytest.fixture(scope="session")
def jvm_build(android_toolchain, tmp_path_factory):
    """The Java core, its JUnit tests and the JVM CLI, compiled against ORT 1.29.0's Java API."""
    from android_demo.tools.jvm import compile_all

    return compile_all(android_toolchain, tmp_path_factory.mktemp("jvm"))


@pytest.fixture(scope="session")
def demo_apk(android_toolchain, mv2_onnx, real_photos, tmp_path_factory):
    """The signed demo APK built from ``mv2_onnx`` (arm64-v8a), and its build report."""
    from android_demo.tools.build_apk import build_apk

    out = tmp_path_factory.mktemp("apk") / "cskd-demo.apk"
    return build_apk(mv2_onnx, out, photo=real_photos[0], toolchain=android_toolchain)
