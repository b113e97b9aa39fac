"""A small *trained* model for the export tests, and one full export run shared by them.

INT8 parity only means something on a trained network (on random weights every INT8 path collapses, see
toolchain.md), so the fixture trains a small network for a few dozen steps on real photos whose brightness is
changed at random, with the target score a function of brightness. The result ranks photos by brightness, which
the degraded parity copies (darkened, brightened, hazy, ...) spread over the whole score range.

The network is timm's ``test_resnet`` (0.37 M parameters, made for tests). A MobileNetV2-0.5 trained the same
way for 60 steps is too rough a function for INT8: its INT8 Spearman on the parity set sat at 0.97-0.99 for
every recipe, while this one reaches 0.999; the exporter's MobileNetV2 path is exercised by the runtime tests
(tests/runtime/test_tflite.py) and the benchmark.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

#: Input size for tests on the default model's architecture (the fixes under test do not depend on it; a small
#: input keeps conversions and the MIL evaluation cheap).
MV2_SIZE = 96
SIZE = 128  # small input: every conversion, calibration and parity run is ~3x cheaper than at 224
RESIZE = 146
STEPS = 40
BATCH = 16


def brightness_target(x_uint8: np.ndarray) -> float:
    """Score in [1.5, 9.5] from the mean luminance of an RGB uint8 image."""
    lum = (x_uint8.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).mean() / 255.0
    return 1.5 + 8.0 * float(lum)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """Checkpoint of a small ResNet trained to score photos by brightness."""
    import torch

    from cskd_runtime.imageio import load_rgb
    from cskd_runtime.manifest import InputSpec, Manifest, ModelInfo
    from cskd_runtime.preprocess import normalize, resize_and_crop
    from cskd_train import assets
    from cskd_train.data.items import gaussian_distribution
    from cskd_train.model import AestheticModel, ModelConfig, save_checkpoint

    spec = InputSpec(height=SIZE, width=SIZE, resize_height=RESIZE, resize_width=RESIZE)
    manifest = Manifest(model=ModelInfo(name="test-brightness-resnet", version="0.0.1", architecture="test_resnet"),
                        input=spec, provenance={"purpose": "export tests"})
    photos = [np.asarray(resize_and_crop(load_rgb(p, draft_size=(2 * RESIZE, 2 * RESIZE)), spec))
              for p in assets.photo_paths("train")]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = AestheticModel(ModelConfig(backbone="test_resnet", hidden=0, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    t0 = time.time()
    for _ in range(STEPS):
        idx = rng.integers(0, len(photos), BATCH)
        xs, ys = [], []
        for i in idx:
            img = photos[i].astype(np.float32) * rng.uniform(0.2, 1.8)
            if rng.random() < 0.5:
                img = img[:, ::-1]
            img = np.clip(img, 0, 255).astype(np.uint8)
            xs.append(normalize(img, spec).transpose(2, 0, 1))
            ys.append(gaussian_distribution(brightness_target(img), 1.0, 10))
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys).astype(np.float32))
        loss = -(y * torch.log_softmax(model.logits(x), dim=-1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "brightness.pt"
    save_checkpoint(path, model, manifest, stage="test", extra={"train_seconds": time.time() - t0})
    return path


@pytest.fixture(scope="session")
def full_export(trained_checkpoint, tmp_path_factory):
    """One ``cskd-export --target all`` run (every target and precision) shared by the tests that inspect it."""
    from cskd_export.cli import main

    out = tmp_path_factory.mktemp("exported")
    t0 = time.time()
    rc = main(["--target", "all", "--checkpoint", str(trained_checkpoint), "--out", str(out), "-q"])
    return {"rc": rc, "out": out, "seconds": time.time() - t0}


@pytest.fixture(scope="session")
def mv2_same():
    """The default model's architecture (random weights): timm mobilenetv2_100, pad_type='same', bn_eps=1e-3."""
    import torch

    from cskd_runtime.manifest import InputSpec, Manifest, ModelInfo
    from cskd_train.model import AestheticModel, ModelConfig

    torch.manual_seed(0)
    model = AestheticModel(ModelConfig(backbone="mobilenetv2_100", hidden=64, dropout=0.0,
                                       timm_kwargs={"pad_type": "same", "bn_eps": 1e-3})).eval()
    # Fresh BatchNorm layers are all identical (zero bias), so the ONNX exporter would share one folded bias
    # tensor between convs, which a trained model never does (and which stops onnxruntime's int8 fusion).
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    manifest = Manifest(model=ModelInfo(name="test-mv2-same", version="0.0.1", architecture="mobilenetv2_100"),
                        input=InputSpec(height=MV2_SIZE, width=MV2_SIZE, resize_height=MV2_SIZE, resize_width=MV2_SIZE))
    return model, manifest
