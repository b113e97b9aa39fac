"""The model contract: everything needed to feed a cskd model and to read what it returns.

A :class:`Manifest` is the single source of truth for preprocessing. Training evaluates with it, the exporter
embeds it in every artifact (ONNX ``metadata_props``, a TFLite metadata buffer, CoreML user-defined metadata),
and the runtime reads it back from the artifact, so the phone cannot drift from PyTorch.

The JSON form is versioned (``schema_version``) and described by ``manifest.schema.json`` next to this module.
:func:`Manifest.from_dict` validates and collects *all* problems into one :class:`ManifestError`, so a user
fixing a hand-written manifest sees everything that is wrong at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = [
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "METADATA_KEY",
    "ManifestError",
    "Quantization",
    "InputSpec",
    "OutputSpec",
    "ModelInfo",
    "Calibration",
    "Manifest",
    "schema_path",
]

SCHEMA_ID = "cskd.manifest"
SCHEMA_VERSION = 1
#: Key under which the manifest JSON is stored inside artifacts (ONNX metadata_props, TFLite metadata name,
#: CoreML user_defined_metadata).
METADATA_KEY = "cskd.manifest"

INTERPOLATIONS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
RESIZE_MODES = ("stretch", "shorter_side")
CROP_MODES = ("center", "none")
LAYOUTS = ("NCHW", "NHWC")
INPUT_DTYPES = ("float32", "float16", "int8", "uint8")
OUTPUT_DTYPES = ("float32", "float16", "int8", "uint8")
ACTIVATIONS = ("softmax", "none")
COLOR_SPACES = ("RGB",)


class ManifestError(ValueError):
    """A manifest is missing, malformed or inconsistent. ``problems`` lists every issue found."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid cskd manifest{where}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def to_dict(self) -> dict[str, Any]:
        return {"scale": float(self.scale), "zero_point": int(self.zero_point)}


@dataclass(frozen=True)
class InputSpec:
    """How a decoded photo becomes the model's input tensor.

    The pipeline is: EXIF transpose -> composite alpha on ``background`` -> RGB -> resize (``resize_mode`` to
    ``resize_height`` x ``resize_width`` with ``interpolation``) -> crop (``crop_mode`` to ``height`` x ``width``)
    -> ``(pixel * scale - mean) / std`` -> ``layout`` -> ``dtype`` (quantized with ``quantization`` if integer).

    Attributes:
        height: Model input height in pixels.
        width: Model input width in pixels.
        resize_height: Height after resizing, before cropping.
        resize_width: Width after resizing, before cropping.
        resize_mode: ``stretch`` resizes to exactly ``resize_height x resize_width`` (whole frame kept, aspect
            ratio not); ``shorter_side`` scales the shorter side to ``resize_height`` (must equal width).
        crop_mode: ``center`` crops the centre ``height x width``; ``none`` requires resize size == input size.
        interpolation: Pillow resampling filter name. Pillow's filters antialias when downscaling.
        antialias: Must be true: the contract follows Pillow's (antialiased) resampling semantics.
        color_space: Channel order of the tensor; only ``RGB``.
        background: RGB colour that transparent pixels are composited onto.
        scale: Multiplier applied to 0..255 pixel values before ``mean``/``std``.
        mean: Per-channel mean subtracted after scaling.
        std: Per-channel standard deviation divided after subtracting the mean.
        layout: ``NCHW`` (PyTorch, ONNX) or ``NHWC`` (TFLite for mobile).
        dtype: Tensor element type the artifact expects.
        quantization: Input quantization, required when ``dtype`` is an integer type.
        draft: Whether JPEGs may be downscaled inside the decoder (DCT scaling) before resizing. Such a photo
            is already approximate, so the runtime also resamples only the crop region and rotates after
            resizing (pixel values within 1 of the exact order).
        draft_factor: With ``draft``, the decoded image keeps at least this many times the resize size on each
            side, which bounds the difference to a full decode. 4 keeps scores of grainy 12 MP photos within 0.02
            (1..10 scale) of a full decode; 2 moved some by 0.03 (``cskd-bench runtime``).
    """

    height: int = 224
    width: int = 224
    resize_height: int = 256
    resize_width: int = 256
    resize_mode: str = "stretch"
    crop_mode: str = "center"
    interpolation: str = "bilinear"
    antialias: bool = True
    color_space: str = "RGB"
    background: tuple[int, int, int] = (255, 255, 255)
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    layout: str = "NCHW"
    dtype: str = "float32"
    quantization: Quantization | None = None
    draft: bool = True
    draft_factor: float = 4.0

    def shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """The input tensor shape for ``batch`` images in this spec's layout."""
        if self.layout == "NCHW":
            return (batch, 3, self.height, self.width)
        return (batch, self.height, self.width, 3)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["background"] = list(self.background)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["quantization"] = self.quantization.to_dict() if self.quantization else None
        return d


@dataclass(frozen=True)
class OutputSpec:
    """How to read the model's output.

    Attributes:
        bins: Score value of each output bin (AVA: 1..10). The mean score is ``sum(p_i * bins_i)``.
        activation: What the runtime applies to the raw output: ``softmax`` for logits, ``none`` when the graph
            already ends in a softmax.
        dtype: Output tensor element type.
        quantization: Output quantization, required when ``dtype`` is an integer type.
    """

    bins: tuple[float, ...] = tuple(float(i) for i in range(1, 11))
    activation: str = "none"
    dtype: str = "float32"
    quantization: Quantization | None = None

    @property
    def score_range(self) -> tuple[float, float]:
        """Lowest and highest score the model can return."""
        return (min(self.bins), max(self.bins))

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": [float(b) for b in self.bins],
            "score_range": list(self.score_range),
            "activation": self.activation,
            "dtype": self.dtype,
            "quantization": self.quantization.to_dict() if self.quantization else None,
        }


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the model: what it is, which version, under which licence."""

    name: str = "cskd-model"
    version: str = "0.0.0"
    architecture: str = ""
    description: str = ""
    license: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Calibration:
    """Maps a raw mean score to a percentile against a stated reference population.

    Attributes:
        reference: What the percentiles are relative to (the reference photo population, in words).
        method: How ``quantiles`` were produced, in words.
        quantiles: Non-decreasing raw scores at percentiles 0, 1, ..., 100 (101 values).
        target: Optional name of a second scale the percentile is mapped onto (e.g. AVA vote means).
        target_quantiles: That scale's values at percentiles 0..100 (101 values), or empty.
    """

    reference: str
    method: str
    quantiles: tuple[float, ...]
    target: str = ""
    target_quantiles: tuple[float, ...] = ()

    def to_target(self, score: float) -> float | None:
        """Score on the ``target`` scale at the same percentile (quantile mapping), or None without a target."""
        if not self.target_quantiles:
            return None
        pos = self.percentile(score) / 100.0 * (len(self.target_quantiles) - 1)
        lo = min(int(pos), len(self.target_quantiles) - 2)
        frac = pos - lo
        return self.target_quantiles[lo] * (1 - frac) + self.target_quantiles[lo + 1] * frac

    def percentile(self, score: float) -> float:
        """Percentile (0..100) of ``score`` by piecewise-linear interpolation of the quantile table."""
        q = self.quantiles
        if score <= q[0]:
            return 0.0
        if score >= q[-1]:
            return 100.0
        # Binary search over a 101-entry table: cheaper than importing numpy here.
        lo, hi = 0, len(q) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if q[mid] <= score:
                lo = mid
            else:
                hi = mid
        span = q[hi] - q[lo]
        frac = 0.0 if span <= 0 else (score - q[lo]) / span
        return 100.0 * (lo + frac) / (len(q) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "method": self.method, "quantiles": [float(v) for v in self.quantiles],
                "target": self.target, "target_quantiles": [float(v) for v in self.target_quantiles]}


@dataclass(frozen=True)
class Manifest:
    """The versioned model contract embedded in every artifact.

    Attributes:
        model: Identity of the model.
        input: Preprocessing and input tensor description.
        output: Output tensor description.
        provenance: Free-form but recorded facts: recipe, data, measured metrics, export precision, versions.
        calibration: Optional percentile calibration of the mean score.
    """

    model: ModelInfo = field(default_factory=ModelInfo)
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, including ``schema`` and ``schema_version``."""
        return {
            "schema": SCHEMA_ID,
            "schema_version": SCHEMA_VERSION,
            "model": self.model.to_dict(),
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "provenance": _jsonable(dict(self.provenance)),
            "calibration": self.calibration.to_dict() if self.calibration else None,
        }

    def to_json(self, indent: int | None = None) -> str:
        """Serialise to JSON (sorted keys, so equal manifests give equal bytes)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str | None = None) -> "Manifest":
        """Parse and validate a manifest from JSON text.

        Raises:
            ManifestError: if the text is not JSON or the manifest is invalid.
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError([f"not valid JSON ({exc})"], source) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> "Manifest":
        """Validate ``data`` and build a manifest.

        Args:
            data: Parsed JSON.
            source: Where the data came from, used in error messages.

        Raises:
            ManifestError: listing every problem found.
        """
        problems = validate(data)
        if problems:
            raise ManifestError(problems, source)
        inp = dict(data["input"])
        inp["background"] = tuple(int(v) for v in inp["background"])
        inp["mean"] = tuple(float(v) for v in inp["mean"])
        inp["std"] = tuple(float(v) for v in inp["std"])
        inp["quantization"] = _quant(inp.get("quantization"))
        out = dict(data["output"])
        out.pop("score_range", None)
        out["bins"] = tuple(float(v) for v in out["bins"])
        out["quantization"] = _quant(out.get("quantization"))
        cal = data.get("calibration")
        return cls(
            model=ModelInfo(**{k: str(v) for k, v in data["model"].items() if k in _MODEL_KEYS}),
            input=InputSpec(**{k: v for k, v in inp.items() if k in _INPUT_KEYS}),
            output=OutputSpec(**{k: v for k, v in out.items() if k in _OUTPUT_KEYS}),
            provenance=dict(data.get("provenance") or {}),
            calibration=(
                Calibration(cal["reference"], cal["method"], tuple(float(v) for v in cal["quantiles"]),
                            str(cal.get("target") or ""), tuple(float(v) for v in cal.get("target_quantiles") or ()))
                if cal
                else None
            ),
        )

    def replace(self, **changes: Any) -> "Manifest":
        """Copy with top-level fields replaced; ``input=dict(...)``/``output=dict(...)`` update sub-fields."""
        for key in ("input", "output", "model"):
            if isinstance(changes.get(key), Mapping):
                changes[key] = dataclasses.replace(getattr(self, key), **changes[key])
        if isinstance(changes.get("provenance"), Mapping):
            changes["provenance"] = {**self.provenance, **changes["provenance"]}
        return dataclasses.replace(self, **changes)

    def check_against_tensor(self, shape: Sequence[Any], dtype: str, where: str = "model") -> None:
        """Refuse an artifact whose actual input tensor disagrees with its manifest.

        Args:
            shape: The artifact's input shape; dynamic dimensions may be None or strings.
            dtype: The artifact's input element type name (numpy-style, e.g. ``float32``).
            where: Name of the artifact for the error message.

        Raises:
            ManifestError: if shape (ignoring the batch dimension) or dtype differ.
        """
        expected = self.input.shape(1)[1:]
        actual = tuple(shape)[1:]
        problems = []
        if len(shape) != 4 or any(isinstance(a, int) and a != e for a, e in zip(actual, expected)):
            problems.append(f"input shape {list(shape)} does not match manifest {self.input.layout} {list(expected)}")
        if dtype != self.input.dtype:
            problems.append(f"input dtype {dtype} does not match manifest dtype {self.input.dtype}")
        if problems:
            raise ManifestError(problems, where)


_MODEL_KEYS = {f.name for f in dataclasses.fields(ModelInfo)}
_INPUT_KEYS = {f.name for f in dataclasses.fields(InputSpec)}
_OUTPUT_KEYS = {f.name for f in dataclasses.fields(OutputSpec)}


def schema_path() -> str:
    """Filesystem path of the JSON Schema describing the manifest."""
    import os

    return os.path.join(os.path.dirname(__file__), "manifest.schema.json")


def _quant(d: Mapping[str, Any] | None) -> Quantization | None:
    return Quantization(float(d["scale"]), int(d["zero_point"])) if d else None


def _jsonable(obj: Any) -> Any:
    """Make provenance JSON-safe (numpy scalars, tuples, NaN) without importing numpy."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _jsonable(obj.item())
    return obj


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate(data: Any) -> list[str]:
    """Return every problem with a manifest dict (empty list when valid).

    The checks mirror ``manifest.schema.json`` and add the cross-field rules a JSON Schema cannot express
    (crop fits inside resize, quantization present for integer tensors, ...).
    """
    if not isinstance(data, Mapping):
        return [f"expected a JSON object, got {type(data).__name__}"]
    p: list[str] = []
    if data.get("schema") != SCHEMA_ID:
        p.append(f"'schema' must be {SCHEMA_ID!r} (got {data.get('schema')!r})")
    version = data.get("schema_version")
    if not _is_int(version):
        p.append("'schema_version' is missing or not an integer")
    elif version > SCHEMA_VERSION:
        p.append(f"schema_version {version} is newer than this runtime understands ({SCHEMA_VERSION}); upgrade cskd-runtime")
    elif version < 1:
        p.append(f"schema_version {version} is not valid")
    for section in ("model", "input", "output"):
        if not isinstance(data.get(section), Mapping):
            p.append(f"missing section '{section}'")
    if p and any(s.startswith("missing section") for s in p):
        return p

    model = data["model"]
    for key in ("name", "version"):
        if not isinstance(model.get(key), str) or not model.get(key):
            p.append(f"model.{key} is missing or empty")

    inp = data["input"]
    required = ("height", "width", "resize_height", "resize_width", "resize_mode", "crop_mode", "interpolation",
                "mean", "std", "scale", "layout", "dtype")
    for key in required:
        if key not in inp:
            p.append(f"input.{key} is missing")
    if any(k not in inp for k in required):
        return p
    for key in ("height", "width", "resize_height", "resize_width"):
        if not _is_int(inp[key]) or inp[key] <= 0:
            p.append(f"input.{key} must be a positive integer (got {inp[key]!r})")
    _choice(p, inp, "resize_mode", RESIZE_MODES, "input")
    _choice(p, inp, "crop_mode", CROP_MODES, "input")
    _choice(p, inp, "interpolation", INTERPOLATIONS, "input")
    _choice(p, inp, "layout", LAYOUTS, "input")
    _choice(p, inp, "dtype", INPUT_DTYPES, "input")
    _choice(p, {"color_space": inp.get("color_space", "RGB")}, "color_space", COLOR_SPACES, "input")
    if inp.get("antialias", True) is not True:
        p.append("input.antialias must be true: the contract follows Pillow's antialiased resampling")
    for key in ("mean", "std"):
        v = inp[key]
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_num(x) for x in v)):
            p.append(f"input.{key} must be a list of 3 numbers (got {v!r})")
    if isinstance(inp["std"], (list, tuple)) and any(_is_num(x) and x == 0 for x in inp["std"]):
        p.append("input.std must not contain 0")
    if not _is_num(inp["scale"]) or inp["scale"] <= 0:
        p.append(f"input.scale must be a positive number (got {inp['scale']!r})")
    bg = inp.get("background", [255, 255, 255])
    if not (isinstance(bg, (list, tuple)) and len(bg) == 3 and all(_is_int(x) and 0 <= x <= 255 for x in bg)):
        p.append(f"input.background must be 3 integers in 0..255 (got {bg!r})")
    if not isinstance(inp.get("draft", True), bool):
        p.append("input.draft must be true or false")
    df = inp.get("draft_factor", 4.0)
    if not _is_num(df) or df < 1:
        p.append(f"input.draft_factor must be a number >= 1 (got {df!r})")
    if not any(s.startswith(("input.height", "input.width", "input.resize")) for s in p):
        if inp["resize_mode"] == "shorter_side" and inp["resize_height"] != inp["resize_width"]:
            p.append("input.resize_mode 'shorter_side' needs resize_height == resize_width")
        if inp["crop_mode"] == "none" and (inp["resize_height"], inp["resize_width"]) != (inp["height"], inp["width"]):
            p.append("input.crop_mode 'none' needs the resize size to equal the input size")
        if inp["resize_height"] < inp["height"] or inp["resize_width"] < inp["width"]:
            p.append("input resize size must be at least the input (crop) size")
    _check_quant(p, inp, "input")

    out = data["output"]
    bins = out.get("bins")
    if not (isinstance(bins, (list, tuple)) and len(bins) >= 2 and all(_is_num(b) for b in bins)):
        p.append(f"output.bins must be a list of at least 2 numbers (got {bins!r})")
    elif any(b2 <= b1 for b1, b2 in zip(bins, bins[1:])):
        p.append("output.bins must be strictly increasing")
    _choice(p, {"activation": out.get("activation", "none")}, "activation", ACTIVATIONS, "output")
    _choice(p, {"dtype": out.get("dtype", "float32")}, "dtype", OUTPUT_DTYPES, "output")
    _check_quant(p, out, "output")

    if "provenance" in data and data["provenance"] is not None and not isinstance(data["provenance"], Mapping):
        p.append("provenance must be an object")
    cal = data.get("calibration")
    if cal is not None:
        if not isinstance(cal, Mapping):
            p.append("calibration must be an object or null")
        else:
            q = cal.get("quantiles")
            if not isinstance(cal.get("reference"), str) or not isinstance(cal.get("method"), str):
                p.append("calibration.reference and calibration.method must be strings")
            if not (isinstance(q, (list, tuple)) and len(q) == 101 and all(_is_num(v) for v in q)):
                p.append("calibration.quantiles must be 101 numbers (percentiles 0..100)")
            elif any(b < a for a, b in zip(q, q[1:])):
                p.append("calibration.quantiles must be non-decreasing")
            tq = cal.get("target_quantiles") or []
            if tq and not (isinstance(tq, (list, tuple)) and len(tq) == 101 and all(_is_num(v) for v in tq)
                           and all(b >= a for a, b in zip(tq, tq[1:]))):
                p.append("calibration.target_quantiles must be empty or 101 non-decreasing numbers")
    return p


def _choice(p: list[str], d: Mapping[str, Any], key: str, choices: Sequence[str], section: str) -> None:
    if d.get(key) not in choices:
        p.append(f"{section}.{key} must be one of {', '.join(choices)} (got {d.get(key)!r})")


def _check_quant(p: list[str], d: Mapping[str, Any], section: str) -> None:
    q = d.get("quantization")
    integer = d.get("dtype") in ("int8", "uint8")
    if q is None:
        if integer:
            p.append(f"{section}.quantization (scale, zero_point) is required for dtype {d.get('dtype')}")
        return
    if not isinstance(q, Mapping) or not _is_num(q.get("scale")) or not _is_int(q.get("zero_point")):
        p.append(f"{section}.quantization must have a numeric scale and an integer zero_point")
    elif q["scale"] <= 0:
        p.append(f"{section}.quantization.scale must be positive")
