"""TFLite through cskd-runtime: a real MobileNetV2 exported with its manifest scores real photos like PyTorch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mv2_tflite(mv2_model, tmp_path_factory):
    """timm mobilenetv2_100 + 10-bin head as fp32 TFLite (NHWC input) with the manifest embedded."""
    from cskd_export import tflite
    from cskd_export.common import ExportContext

    model, manifest = mv2_model
    path = tmp_path_factory.mktemp("tflite") / "mv2.tflite"
    tflite.export(ExportContext(model=model, manifest=manifest), "fp32", path)
    return path


def test_tflite_scores_real_photos_like_pytorch(mv2_model, mv2_tflite, real_photos, tmp_path):
    import torch

    from cskd_runtime import Scorer

    model, _ = mv2_model
    alone = tmp_path / "model.bin"  # the file alone, under a name that says nothing about its format
    shutil.copy(mv2_tflite, alone)
    scorer = Scorer(alone)
    assert scorer.backend.format == "tflite"
    assert scorer.manifest.input.layout == "NHWC" and scorer.manifest.input.shape(1) == (1, 224, 224, 3)

    x = np.concatenate([scorer.preprocess(p) for p in real_photos])  # runtime preprocessing, NHWC
    ours = np.asarray([r.mean for r in scorer.score_tensor(x)])
    end_to_end = np.asarray([r.mean for r in scorer.score_batch(real_photos)])
    with torch.inference_mode():
        probs = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy().astype(np.float64)
    ref = probs @ np.asarray(scorer.manifest.output.bins)

    assert len(real_photos) >= 5
    assert np.abs(ours - ref).max() <= 1e-4
    np.testing.assert_array_equal(end_to_end, ours)  # photos -> scores is the same path as tensors -> scores


def test_tflite_dynamic_batch_matches_single(mv2_tflite, real_photos):
    from cskd_runtime import Scorer

    scorer = Scorer(mv2_tflite)
    batch = [r.mean for r in scorer.score_batch(real_photos[:5], batch_size=5)]
    single = [scorer.score(p).mean for p in real_photos[:5]]
    np.testing.assert_allclose(batch, single, atol=1e-5)
