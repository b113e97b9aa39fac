"""Stand-in artifacts for the runtime benchmark's tests: a checkpoint and ONNX / TFLite exports with manifests.

The real exporter (``cskd_export``) produces these files for users; the benchmark only needs files of the same
shape (a manifest embedded the way the runtime reads it, ``provenance.export.precision`` like the exporter writes)
without running the exporter's conversions and gates; the manifest goes in through ``cskd_export.embed``, as in
real exports. Nothing here is used outside ``tests/bench``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cskd_export.embed import embed_tflite
from cskd_train.assets import sha256_file
from cskd_runtime.manifest import Manifest


def artifact_manifest(manifest: Manifest, target: str, precision: str, checkpoint: Path, layout: str) -> Manifest:
    """The checkpoint's manifest with the tensor layout and the export provenance the exporter records."""
    return manifest.replace(
        input={"layout": layout},
        provenance={"export": {"target": target, "precision": precision,
                               "source": {"checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint)}}},
    )


def make_checkpoint(model: Any, manifest: Manifest, path: Path) -> Path:
    from cskd_train.model import save_checkpoint

    return save_checkpoint(path, model, manifest, stage="skd")


def onnx_fp32(model: Any, manifest: Manifest, checkpoint: Path, path: Path) -> Path:
    from tests.conftest import export_onnx_with_manifest

    return export_onnx_with_manifest(model, artifact_manifest(manifest, "onnx", "fp32", checkpoint, "NCHW"), path)


def onnx_int8(fp32_path: Path, manifest: Manifest, checkpoint: Path, calibration: Sequence[np.ndarray],
              path: Path) -> Path:
    """Static QDQ int8 (per-channel weights) calibrated on ``calibration`` tensors; float input and output."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {"image": x}

    quantize_static(str(fp32_path), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    import onnx

    from cskd_export.embed import embed_onnx

    onnx.save(embed_onnx(onnx.load(str(path)), artifact_manifest(manifest, "onnx", "int8", checkpoint, "NCHW")),
              str(path))
    return path


def tflite_fp32(model: Any, manifest: Manifest, checkpoint: Path, path: Path) -> Path:
    """litert-torch conversion with an NHWC input (batch 1) and the manifest as metadata ``cskd.manifest``."""
    import litert_torch
    import torch

    class NHWC(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.permute(0, 3, 1, 2))

    spec = manifest.input
    edge = litert_torch.convert(NHWC(model).eval(), (torch.zeros(1, spec.height, spec.width, 3),))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "m.tflite"
        edge.export(str(raw))
        data = raw.read_bytes()
    m = artifact_manifest(manifest, "tflite", "fp32", checkpoint, "NHWC")
    path.write_bytes(embed_tflite(data, m))
    return path


def _tflite_quant(detail: dict) -> tuple[str, Any]:
    from cskd_runtime.manifest import Quantization

    dtype = np.dtype(detail["dtype"]).name
    scale, zp = detail.get("quantization", (0.0, 0))
    return dtype, (Quantization(float(scale), int(zp)) if np.dtype(detail["dtype"]).kind in "iu" else None)


def tflite_quantized(fp32_tflite: Path, manifest: Manifest, checkpoint: Path, precision: str,
                     calibration: Sequence[np.ndarray], path: Path) -> Path:
    """fp16 weights (float I/O) or static w8a8 int8 (int8 I/O) from the fp32 .tflite with ai-edge-quantizer.

    Slower than the other helpers (~1 min for int8 calibration); the end-to-end test does not use it.
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import qtyping, quantizer

    data = fp32_tflite.read_bytes()
    q = quantizer.Quantizer(bytearray(data))
    if precision == "fp16":
        q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                 algorithm_key="float_casting")
        out = bytes(q.quantize().quantized_model)
    elif precision == "int8":
        it = Interpreter(model_content=data)
        sig = next(iter(it.get_signature_list()))
        name = it.get_signature_list()[sig]["inputs"][0]
        q.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8,
                            weight_num_bits=8, weight_granularity=qtyping.QuantGranularity.CHANNELWISE)
        calib = q.calibrate({sig: [{name: np.ascontiguousarray(x.transpose(0, 2, 3, 1))} for x in calibration]})
        out = bytes(q.quantize(calib).quantized_model)
    else:
        raise ValueError(precision)
    it = Interpreter(model_content=out)
    in_dtype, in_q = _tflite_quant(it.get_input_details()[0])
    out_dtype, out_q = _tflite_quant(it.get_output_details()[0])
    # The quantizer keeps the fp32 model's metadata entry; embedding replaces it with the int8 / fp16 manifest.
    m = artifact_manifest(manifest, "tflite", precision, checkpoint, "NHWC").replace(
        input={"dtype": in_dtype, "quantization": in_q}, output={"dtype": out_dtype, "quantization": out_q})
    path.write_bytes(embed_tflite(out, m))
    return path


def build_all(model: Any, manifest: Manifest, out: Path, calibration: Sequence[np.ndarray],
              tflite: bool = True) -> tuple[Path, Path]:
    """Checkpoint + ONNX fp32 + ONNX int8 (+ TFLite fp32) named like the exporter names them.

    Returns:
        (artifact folder, checkpoint path).
    """
    arts = out / "artifacts"
    arts.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(model, manifest, out / "model.pt")
    stem = manifest.model.name
    fp32 = onnx_fp32(model, manifest, ckpt, arts / f"{stem}-fp32.onnx")
    onnx_int8(fp32, manifest, ckpt, calibration, arts / f"{stem}-int8.onnx")
    if tflite:
        tflite_fp32(model, manifest, ckpt, arts / f"{stem}-fp32.tflite")
    return arts, ckpt
