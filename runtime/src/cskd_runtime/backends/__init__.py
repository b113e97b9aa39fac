"""Inference backends: open a model file, read its embedded manifest, run a preprocessed tensor.

The format is detected from the file's bytes, never from its name: a ``.bin`` that is really a TFLite
flatbuffer opens as TFLite, and an ONNX file renamed ``.tflite`` still opens as ONNX.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import Backend, ModelLoadError

__all__ = ["Backend", "ModelLoadError", "detect_format", "open_backend"]


def detect_format(path: str | os.PathLike) -> str:
    """Return ``"onnx"`` or ``"tflite"`` from the file's content.

    Raises:
        ModelLoadError: for missing files, directories (e.g. a CoreML ``.mlpackage``) and unknown content.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "Manifest.json").exists() or p.suffix == ".mlpackage":
            raise ModelLoadError(p, "is a CoreML package; cskd-runtime runs ONNX and TFLite (use Core ML on Apple devices)")
        raise ModelLoadError(p, "is a directory, not a model file")
    if not p.is_file():
        raise ModelLoadError(p, "model file not found")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if len(head) < 8:
        raise ModelLoadError(p, f"file too small to be a model ({p.stat().st_size} bytes)")
    # TFLite flatbuffers carry the file identifier "TFL3" right after the 4-byte root offset.
    if head[4:8] == b"TFL3":
        return "tflite"
    # An ONNX ModelProto is a protobuf whose first field is ir_version (field 1, varint): tag byte 0x08.
    if head[0] == 0x08:
        return "onnx"
    raise ModelLoadError(p, f"not an ONNX or TFLite model (first bytes {head[:8].hex()})")


def open_backend(path: str | os.PathLike, threads: int | None = None) -> Backend:
    """Open ``path`` with the backend its content calls for.

    Args:
        path: ONNX or TFLite file with an embedded cskd manifest.
        threads: Intra-op threads (None: the backend's default, usually all cores).
    """
    fmt = detect_format(path)
    if fmt == "onnx":
        from .onnx import OnnxBackend

        return OnnxBackend(path, threads=threads)
    from .tflite import TFLiteBackend

    return TFLiteBackend(path, threads=threads)
