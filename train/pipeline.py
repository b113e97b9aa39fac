"""``cskd-train pipeline``: several stages run in order from one recipe (the embedded default model's recipe).

A pipeline recipe has a single ``pipeline:`` section: how to make the data (:func:`cskd_train.default_model.
prepare_data`), ``defaults`` merged into every stage's config, the ``stages`` in order (each an ordinary stage
config, as for ``cskd-train cfa|teacher|skd|nima|kd``), and which stage is the ``final`` model and which is the
``ablation``. Strings like ``{stages.cfa}`` refer to an earlier stage's checkpoint.

Nothing is redone that is finished: ``pipeline.json`` in the output folder records each finished stage's
checkpoint, and a stage killed half-way resumes from its own ``last.pt`` (the stage configs set ``run.resume``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

logger = logging.getLogger(__name__)

__all__ = ["PipelineError", "load_pipeline", "run_pipeline", "install_default"]

_REF = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")

#: Where the packaged default model lives: the checkpoint (cskd, for cskd-export) and the artifacts (cskd-runtime).
_REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT_DIR = _REPO / "export" / "default_model"
RUNTIME_MODELS_DIR = _REPO / "runtime" / "src" / "cskd_runtime" / "models"


class PipelineError(ValueError):
    """A pipeline recipe is malformed or refers to something that does not exist."""


def load_pipeline(recipe: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """Read a pipeline recipe (bundled name or YAML path) and return its ``pipeline`` section and file."""
    from .config import RECIPES_DIR

    path = Path(recipe)
    if not path.suffix:
        path = RECIPES_DIR / f"{recipe}.yaml"
    if not path.is_file():
        raise PipelineError(f"{path}: pipeline recipe not found")
    data = yaml.safe_load(path.read_text()) or {}
    spec = data.get("pipeline") if isinstance(data, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("stages"), dict) or not spec["stages"]:
        raise PipelineError(f"{path}: a pipeline recipe needs a 'pipeline:' section with 'stages:'")
    for key in ("final", "ablation"):
        if spec.get(key) and spec[key] not in spec["stages"]:
            raise PipelineError(f"{path}: pipeline.{key} names {spec[key]!r}, which is not a stage")
    return spec, path


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def _fill(node: Any, context: Mapping[str, str], where: str) -> Any:
    """Replace ``{name}`` references in every string of a nested config."""
    if isinstance(node, dict):
        return {k: _fill(v, context, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, context, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in context and m.group(1).startswith("stages."):
                raise PipelineError(f"{where}: {{{m.group(1)}}} is not a stage that runs before this one "
                                    f"(stages run in the order they are written)")
            if m.group(1) not in context:
                raise PipelineError(f"{where}: unknown reference {{{m.group(1)}}} (known: {', '.join(sorted(context))})")
            return str(context[m.group(1)])

        return _REF.sub(sub, node)
    return node


def run_pipeline(recipe: str | os.PathLike, out: str | os.PathLike = "runs/default_cpu",
                 install: bool = False,
                 install_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run every stage of a pipeline recipe that is not finished yet.

    Args:
        recipe: Bundled pipeline name (``default_cpu``) or a YAML path.
        out: Output folder; each stage writes into ``out/<stage>``.
        install: Also calibrate the final model and install it as the packaged default (see
            :func:`install_default`).
        install_dir: Where to install (default: the cskd_export package's ``default_model`` folder).

    Returns:
        The pipeline state: stage -> checkpoint path, data description, timings.
    """
    from . import offline_init
    from .cli import run_stage
    from .default_model import prepare_data

    spec, path = load_pipeline(recipe)
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "pipeline.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("recipe_text") not in (None, path.read_text()):
        logger.warning("%s changed since %s was written; finished stages are kept", path, state_path)
    state.update(recipe=str(path), recipe_text=path.read_text())
    state.setdefault("stages", {})
    state.setdefault("seconds", {})

    data_spec = dict(spec.get("data", {}))
    # `data.given` names ready-made CSVs (labeled_csv, unlabeled_csv, val_csv) instead of the default-model data.
    data = data_spec["given"] if "given" in data_spec else prepare_data(**data_spec)
    context: dict[str, str] = {f"data.{k}": str(v) for k, v in data.items() if isinstance(v, (str, int, float))}
    if any("{dinov2_onnx}" in json.dumps(s) for s in spec["stages"].values()):
        context["dinov2_onnx"] = str(offline_init.dinov2_small_encoder_onnx(fetch=True))
    for name, ckpt in state["stages"].items():
        context[f"stages.{name}"] = ckpt

    for name, stage_spec in spec["stages"].items():
        if name in state["stages"] and Path(state["stages"][name]).is_file():
            logger.info("pipeline: %s already done (%s)", name, state["stages"][name])
            continue
        cfg = stage_config(spec, path, name, context, out_dir)
        logger.info("pipeline: stage %s (%s)", name, cfg.stage)
        t0 = time.time()
        ckpt = Path(run_stage(cfg))
        state["stages"][name] = str(ckpt)
        state["seconds"][name] = round(time.time() - t0, 1)
        context[f"stages.{name}"] = str(ckpt)
        _write_json(state_path, state)

    state["final"] = state["stages"].get(spec.get("final", ""), "")
    state["ablation"] = state["stages"].get(spec.get("ablation", ""), "")
    _write_json(state_path, state)
    if install and state["final"]:
        state["installed"] = install_default(Path(state["final"]), spec,
                                             Path(state["ablation"]) if state["ablation"] else None,
                                             Path(install_dir) if install_dir else DEFAULT_CHECKPOINT_DIR)
        _write_json(state_path, state)
    return state


def stage_config(spec: Mapping[str, Any], path: Path, name: str, context: Mapping[str, str], out_dir: Path) -> Any:
    """The :class:`~cskd_train.config.Config` of stage ``name``: its base stage recipe (``recipe:``), the
    pipeline's ``defaults``, the stage's own settings, references filled in, output under ``out_dir/name``."""
    from .config import RECIPES_DIR, _recipe_path, config_from_dict

    stage_spec = dict(spec["stages"][name])
    base: dict[str, Any] = {}
    if "recipe" in stage_spec:  # a stage recipe (bundled name or path) as the base of this stage
        base = yaml.safe_load(_recipe_path(stage_spec.pop("recipe")).read_text()) or {}
    merged = _merge(_merge(base, spec.get("defaults", {})), stage_spec)
    merged = _fill(merged, context, f"{path.name}:stages.{name}")
    merged.setdefault("run", {})["out"] = str(out_dir / name)
    merged["recipe"] = f"{path.stem}:{name}"
    # As for stage recipes: bundled ones resolve relative paths against the current folder, files against theirs.
    merged.setdefault("base_dir", str(Path.cwd() if path.resolve().parent == RECIPES_DIR else path.resolve().parent))
    return config_from_dict(merged, f"{path}:stages.{name}")


def install_default(final: Path, spec: Mapping[str, Any], ablation: Path | None = None,
                    dest: Path = DEFAULT_CHECKPOINT_DIR) -> dict[str, str]:
    """Calibrate the final model's scores and write it (and the ablation) as the packaged default checkpoints.

    The calibration (percentile against the reference population, mapped onto AVA's vote-mean quantiles) goes
    into the manifest, so every artifact exported from the checkpoint carries it.
    """
    from .default_model import score_calibration
    from .model import load_checkpoint, model_from_checkpoint, save_checkpoint

    model, manifest = model_from_checkpoint(final)
    calib = score_calibration(model, manifest)
    info = manifest.model
    manifest = manifest.replace(calibration=calib, model={"name": spec.get("name", info.name),
                                                          "version": str(spec.get("version", info.version))})
    ckpt = load_checkpoint(final)
    keep = {k: ckpt[k] for k in ("config", "metrics", "epoch") if k in ckpt}
    out = {"checkpoint": str(save_checkpoint(dest / f"{spec.get('name', 'default')}.pt", model,
                                             manifest, ckpt.get("stage", "skd"), extra=keep))}
    if ablation is not None:
        abl_model, abl_manifest = model_from_checkpoint(ablation)
        out["ablation"] = str(save_checkpoint(dest / "ablation-mv2-no-cfa-no-skd.pt", abl_model,
                                              abl_manifest, "nima"))
    out.update(export_default(Path(out["checkpoint"]), RUNTIME_MODELS_DIR if dest == DEFAULT_CHECKPOINT_DIR
                              else dest / "runtime_models",
                              precisions=spec.get("export", {}).get("precisions", ("fp32", "int8"))))
    logger.info("installed default model: %s", out)
    return out


#: Artifacts shipped in the runtime wheel: exporter's name -> the runtime's name for it.
SHIPPED = {"fp32.onnx": ".onnx", "int8.onnx": "-int8.onnx", "fp32.tflite": ".tflite", "int8.tflite": "-int8.tflite"}


def export_default(checkpoint: Path, dest: Path, precisions: Sequence[str] = ("fp32", "int8")) -> dict[str, str]:
    """Export the installed checkpoint to ONNX and TFLite (fp32, int8) through ``cskd-export``'s parity gates
    and copy the artifacts and the export report into ``dest`` (the runtime wheel's ``models`` folder).

    Raises:
        RuntimeError: if any artifact fails its gate (nothing is copied then).
    """
    import shutil
    import tempfile

    from cskd_export.cli import main as export_main

    stem = checkpoint.stem
    shipped_files = {k: v for k, v in SHIPPED.items() if k.split(".")[0] in precisions}
    with tempfile.TemporaryDirectory(prefix="cskd-default-export-") as tmp:
        rc = export_main(["--target", "onnx,tflite", "--precision", ",".join(precisions), "--checkpoint", str(checkpoint),
                          "--out", tmp, "-q"])
        if rc != 0:
            raise RuntimeError(f"cskd-export of {checkpoint} failed (exit {rc}); nothing installed")
        dest.mkdir(parents=True, exist_ok=True)
        out = {}
        for produced, shipped in shipped_files.items():
            src = Path(tmp) / f"{stem}-{produced}"
            if not src.is_file():
                raise RuntimeError(f"cskd-export did not write {src.name}; nothing installed")
            out[produced] = str(dest / f"{stem}{shipped}")
        for produced, shipped in shipped_files.items():
            target = dest / f"{stem}{shipped}"
            shutil.copyfile(Path(tmp) / f"{stem}-{produced}", target.with_suffix(target.suffix + ".tmp"))
            os.replace(target.with_suffix(target.suffix + ".tmp"), target)
        for report in ("export_report.json", "export_report.md"):
            if (Path(tmp) / report).is_file():
                shutil.copyfile(Path(tmp) / report, dest / report)
    return out


def _write_json(path: Path, data: Any) -> None:
    if int(os.environ.get("RANK", "0") or 0) != 0:  # under torchrun only rank 0 writes
        return
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
