"""cskd-export: turn a cskd checkpoint into ONNX, TFLite and CoreML artifacts, each gated on parity with PyTorch.

Modules: :mod:`~cskd_export.targets` (the table of targets and precisions, the INT8 fallback ladder),
:mod:`~cskd_export.onnx`, :mod:`~cskd_export.tflite`, :mod:`~cskd_export.coreml` (one per target),
:mod:`~cskd_export.calibration`, :mod:`~cskd_export.parity` (the gate and its tolerance table),
:mod:`~cskd_export.mil_eval` (CoreML numerics without macOS), :mod:`~cskd_export.embed` (manifest in and out of
artifacts), :mod:`~cskd_export.pipeline` (temp name -> gate -> rename), :mod:`~cskd_export.report` and
:mod:`~cskd_export.cli` (``cskd-export``).
"""

__all__: list[str] = []
