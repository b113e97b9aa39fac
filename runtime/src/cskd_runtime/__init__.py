"""cskd-runtime: score photo aesthetics with models exported by cskd (ONNX, TFLite).

Light by design: numpy, Pillow and onnxruntime; TFLite through the ``[tflite]`` extra. Everything about
preprocessing comes from the manifest embedded in the model file.

    >>> from cskd_runtime import Scorer          # doctest: +SKIP
    >>> Scorer().score("photo.jpg").mean         # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Scorer",
    "ScoreResult",
    "ScoreError",
    "Manifest",
    "ManifestError",
    "ImageDecodeError",
    "ModelLoadError",
    "open_backend",
    "default_model_path",
]

# Attributes resolved on first use so `import cskd_runtime` (and `cskd-score --version`) stays instant:
# onnxruntime alone takes ~0.3 s to import.
_LAZY = {
    "Scorer": "scorer",
    "ScoreResult": "scorer",
    "ScoreError": "scorer",
    "default_model_path": "scorer",
    "Manifest": "manifest",
    "ManifestError": "manifest",
    "ImageDecodeError": "imageio",
    "ModelLoadError": "backends",
    "open_backend": "backends",
}

if TYPE_CHECKING:  # pragma: no cover
    from .backends import ModelLoadError, open_backend
    from .imageio import ImageDecodeError
    from .manifest import Manifest, ManifestError
    from .scorer import ScoreError, Scorer, ScoreResult, default_model_path


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'cskd_runtime' has no attribute {name!r}")
