"""What every target module shares: the inputs of one export and the manifest each artifact embeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from cskd_runtime.manifest import Manifest, Quantization
from cskd_train.assets import sha256_file as file_sha256

from .calibration import CalibrationSet
from .targets import Int8Recipe

__all__ = ["ExportContext", "artifact_manifest", "tool_versions", "file_sha256"]


@dataclass
class ExportContext:
    """The source model and what the target modules may share between artifacts.

    Attributes:
        model: PyTorch model in eval mode (fp32, NCHW input), returning a distribution.
        manifest: The checkpoint's manifest (NCHW, float32 input): preprocessing and output bins.
        calibration: INT8 calibration photos and their tensors.
        source: Description of where the model came from (checkpoint path and sha256).
        cache: Intermediate results a target reuses across precisions (e.g. the fp32 TFLite flatbuffer).
    """

    model: Any
    manifest: Manifest
    calibration: CalibrationSet = field(default_factory=CalibrationSet)
    source: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)


def tool_versions(*dists: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are skipped)."""
    out = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            pass
    return out


def artifact_manifest(
    ctx: ExportContext,
    *,
    target: str,
    precision: str,
    layout: str,
    recipe: Int8Recipe | None = None,
    input_dtype: str = "float32",
    input_quantization: Quantization | None = None,
    output_dtype: str = "float32",
    output_quantization: Quantization | None = None,
    tools: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """The source manifest adapted to one artifact's actual input/output tensors, with export provenance.

    The tensor facts (layout, dtype, quantization) must match the artifact exactly: the runtime checks them
    against the tensor when it loads the file.
    """
    export: dict[str, Any] = {"target": target, "precision": precision, "source": dict(ctx.source)}
    if recipe is not None:
        export["int8_recipe"] = recipe.name
        export["int8_recipe_description"] = recipe.description
    export["tools"] = {**tool_versions("cskd", "torch", "timm"), **(tools or {})}
    export.update(extra or {})
    return ctx.manifest.replace(
        input={"layout": layout, "dtype": input_dtype, "quantization": input_quantization},
        output={"dtype": output_dtype, "quantization": output_quantization},
        provenance={"export": export},
    )
