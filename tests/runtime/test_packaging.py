"""The runtime wheel installs alone, light, and works from the file alone."""

import subprocess
import sys
import venv

import pytest


@pytest.mark.slow
@pytest.mark.network
def test_fresh_venv_install_of_runtime_pulls_no_heavy_packages(tmp_path, mv2_onnx):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(root / "runtime")], check=True)
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format", "freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    for heavy in ("torch", "tensorflow", "tensorflow-cpu", "timm", "open-clip-torch", "torchvision", "jax"):
        assert heavy not in names, f"{heavy} was installed by cskd-runtime"
    assert {"cskd-runtime", "numpy", "pillow", "onnxruntime"} <= names
    # The installed package scores with an artifact alone, and names the extra for TFLite.
    code = (
        "import sys\n"
        "from cskd_runtime import Scorer\n"
        f"r = Scorer({str(mv2_onnx)!r}).score(__import__('numpy').zeros((50, 60, 3), 'uint8'))\n"
        "assert 1 <= r.mean <= 10\n"
        "assert 'torch' not in sys.modules\n"
        "from cskd_runtime.backends.tflite import _require_litert\n"
        "try:\n    _require_litert()\nexcept ImportError as e:\n    print('HINT', e)\n"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "pip install 'cskd-runtime[tflite]'" in out
    # The console script is installed.
    ver = subprocess.run([str(env_dir / "bin" / "cskd-score"), "--version"], capture_output=True, text=True, check=True)
    assert "0.1.0" in ver.stdout
