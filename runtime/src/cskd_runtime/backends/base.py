"""What every backend offers, and the output post-processing they share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..manifest import Manifest, ManifestError, OutputSpec
from ..preprocess import cast_input

__all__ = ["Backend", "ModelLoadError", "postprocess"]


class ModelLoadError(RuntimeError):
    """A model file cannot be used: missing, unreadable, without a valid manifest, or inconsistent with it."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def postprocess(raw: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """Raw output tensor -> float32 (N, bins) probability distributions.

    Integer outputs are dequantized; ``activation == "softmax"`` applies a softmax; distributions are
    renormalised to sum to 1 (int8 rounding leaves them a little off).
    """
    y = np.asarray(raw)
    if y.dtype.kind in "iu":
        q = spec.quantization
        if q is None:
            raise ValueError("integer model output without quantization parameters in the manifest")
        y = (y.astype(np.float32) - q.zero_point) * np.float32(q.scale)
    y = y.astype(np.float32).reshape(y.shape[0], -1)
    if spec.activation == "softmax":
        y = y - y.max(axis=1, keepdims=True)
        np.exp(y, out=y)
    y = np.clip(y, 0.0, None)
    total = y.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    return y / total


class Backend:
    """A loaded model. Subclasses implement :meth:`_run_native`.

    Attributes:
        path: Model file.
        format: ``onnx`` or ``tflite``.
        manifest: The contract read from inside the file.
        threads: Intra-op threads requested (None: backend default).
    """

    format = ""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self.manifest: Manifest  # set by subclasses

    # Subclass hooks ---------------------------------------------------------------------------------
    def _run_native(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def max_batch(self) -> int | None:
        """Largest batch one call accepts (None: any)."""
        return None

    # Public ------------------------------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run a normalised float32 batch (manifest layout) -> float32 (N, bins) distributions.

        Input quantization (int8/uint8/float16 artifacts) is applied here from the manifest, so every caller
        hands over the same float tensor whatever the artifact's precision.
        """
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D batch in {self.manifest.input.layout} layout, got shape {x.shape}")
        xin = cast_input(x, self.manifest.input)
        limit = self.max_batch
        if limit is None or x.shape[0] <= limit:
            raw = self._run_native(xin)
        else:
            raw = np.concatenate([self._run_native(xin[i : i + limit]) for i in range(0, x.shape[0], limit)])
        return postprocess(raw, self.manifest.output)

    def run_raw(self, x: np.ndarray) -> Any:
        """Run an already cast tensor and return the raw output (for benchmarks of bare inference)."""
        return self._run_native(x)

    def _load_manifest(self, text: str | bytes | None) -> Manifest:
        if text is None:
            raise ModelLoadError(
                self.path,
                "no cskd manifest embedded in this model (key 'cskd.manifest'); export it with cskd-export "
                "or embed one with cskd_export's manifest tools",
            )
        try:
            return Manifest.from_json(text, source=str(self.path))
        except ManifestError as exc:
            raise ModelLoadError(self.path, "; ".join(exc.problems)) from None

    def _check_io(self, shape: list[Any], dtype: str) -> None:
        try:
            self.manifest.check_against_tensor(shape, dtype, where=str(self.path))
        except ManifestError as exc:
            raise ModelLoadError(self.path, "; ".join(exc.problems)) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, model={self.manifest.model.name!r})"
