"""TFLite / LiteRT backend (``pip install cskd-runtime[tflite]``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..manifest import METADATA_KEY, ManifestError
from .base import Backend, ModelLoadError

__all__ = ["TFLiteBackend", "read_tflite_metadata"]

_EXTRA_HINT = "TFLite support needs the LiteRT interpreter: pip install 'cskd-runtime[tflite]'"


def _require_litert():
    try:
        from ai_edge_litert import interpreter, schema_py_generated
    except ImportError as exc:
        raise ImportError(f"{_EXTRA_HINT} ({exc})") from None
    return interpreter, schema_py_generated


def read_tflite_metadata(path: str | os.PathLike, name: str = METADATA_KEY) -> bytes | None:
    """Return the bytes of the flatbuffer metadata entry ``name``, or None when absent."""
    _, schema = _require_litert()
    data = Path(path).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        entry_name = entry.Name()
        if entry_name is None or entry_name.decode("utf-8", "replace") != name:
            continue
        buf = model.Buffers(entry.Buffer())
        # Buffers of models over 2 GB live outside the flatbuffer, at an absolute offset.
        if buf.Offset() > 1:
            return data[buf.Offset() : buf.Offset() + buf.Size()]
        return buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    return None


class TFLiteBackend(Backend):
    """Runs a .tflite model with the LiteRT (ex TensorFlow Lite) interpreter."""

    format = "tflite"

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__(path, threads)
        interpreter, _ = _require_litert()
        try:
            meta = read_tflite_metadata(self.path)
        except Exception as exc:
            raise ModelLoadError(self.path, f"cannot parse the TFLite flatbuffer ({exc})") from None
        self.manifest = self._load_manifest(meta)
        try:
            self.interpreter = interpreter.Interpreter(model_path=str(self.path), num_threads=threads)
        except Exception as exc:
            raise ModelLoadError(self.path, f"the LiteRT interpreter cannot load this model ({exc})") from None
        ins = self.interpreter.get_input_details()
        outs = self.interpreter.get_output_details()
        if len(ins) != 1 or len(outs) < 1:
            raise ModelLoadError(self.path, f"expected one input and one output, found {len(ins)} and {len(outs)}")
        self._in, self._out = ins[0], outs[0]
        sig = list(self._in.get("shape_signature", self._in["shape"]))
        shape = [None if int(d) < 0 else int(d) for d in sig]
        self._check_io(shape, np.dtype(self._in["dtype"]).name)
        self._check_quant("input", self._in, self.manifest.input.quantization)
        self._check_quant("output", self._out, self.manifest.output.quantization)
        self._dynamic = shape[0] is None
        self._current_batch = int(self._in["shape"][0])
        self.interpreter.allocate_tensors()

    def _check_quant(self, what: str, detail: dict, q) -> None:
        scale, zp = detail.get("quantization", (0.0, 0))
        if np.dtype(detail["dtype"]).kind not in "iu" or scale == 0:
            return
        if q is None or not np.isclose(q.scale, scale, rtol=1e-6) or int(q.zero_point) != int(zp):
            raise ModelLoadError(
                self.path,
                str(ManifestError([f"{what} quantization in the model (scale {scale}, zero point {zp}) differs from "
                                   f"the manifest ({q})"])),
            )

    @property
    def max_batch(self) -> int | None:
        return None if self._dynamic else self._current_batch

    def _run_native(self, x: np.ndarray) -> np.ndarray:
        if self._dynamic and x.shape[0] != self._current_batch:
            self.interpreter.resize_tensor_input(self._in["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self._current_batch = x.shape[0]
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"]).copy()
