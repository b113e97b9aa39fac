"""ONNX Runtime backend (the runtime's default dependency)."""

from __future__ import annotations

import os

import numpy as np

from ..manifest import METADATA_KEY
from .base import Backend, ModelLoadError

__all__ = ["OnnxBackend"]

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


class OnnxBackend(Backend):
    """Runs an ONNX model with onnxruntime on the CPU."""

    format = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__(path, threads)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        # One image pipeline per call: parallelism across operators only adds scheduling overhead here.
        opts.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: albums decode photos on the same cores while the model
        # runs, and spinning threads would take their CPU time.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several private exception types
            raise ModelLoadError(self.path, f"onnxruntime cannot load this model ({exc})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.manifest = self._load_manifest(meta.get(METADATA_KEY))
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelLoadError(self.path, f"expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self._input = inputs[0]
        self._output = outputs[0].name
        self._check_io(list(self._input.shape), _ORT_TYPES.get(self._input.type, self._input.type))
        batch = self._input.shape[0]
        self._max_batch = batch if isinstance(batch, int) and batch > 0 else None

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    def _run_native(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self._output], {self._input.name: x})[0]
