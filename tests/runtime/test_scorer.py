import io

import numpy as np
import pytest
import torch

from cskd_runtime import ModelLoadError, Scorer, ScoreError, ScoreResult
from cskd_runtime.backends import detect_format
from cskd_runtime.manifest import InputSpec
from cskd_runtime.preprocess import preprocess


def _torch_means(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        p = model(torch.from_numpy(x)).numpy().astype(np.float64)
    return p @ np.arange(1, 11)


def test_onnx_matches_pytorch_on_real_photos(mv2_model, mv2_onnx, real_photos):
    model, manifest = mv2_model
    scorer = Scorer(mv2_onnx, threads=1)
    tensors = np.concatenate([scorer.preprocess(p) for p in real_photos])
    expected = _torch_means(model, tensors)
    got = np.array([r.mean for r in scorer.score_batch(real_photos)])
    assert len(got) == len(real_photos) >= 5
    assert np.abs(got - expected).max() <= 1e-4


def test_results_are_distributions_with_consistent_stats(mv2_onnx, make_photo):
    r = Scorer(mv2_onnx).score(make_photo(300, 200))
    p = np.array(r.distribution)
    assert p.shape == (10,) and abs(p.sum() - 1) < 1e-5 and (p >= 0).all()
    assert r.mean == pytest.approx(float(p @ np.arange(1, 11)), abs=1e-6)
    assert r.std == pytest.approx(float(np.sqrt(p @ (np.arange(1, 11) - r.mean) ** 2)), abs=1e-6)
    assert 1 <= r.mean <= 10


def test_scoring_is_deterministic_and_batch_independent(mv2_onnx, make_photo):
    scorer = Scorer(mv2_onnx)
    photos = [make_photo(320, 240, seed=i) for i in range(5)]
    one_by_one = [scorer.score(p).mean for p in photos]
    batched = [r.mean for r in scorer.score_batch(photos, batch_size=3)]
    again = [r.mean for r in scorer.score_batch(photos, batch_size=5)]
    assert np.allclose(one_by_one, batched, atol=1e-5)
    assert batched == again


def test_stream_keeps_order_and_reports_bad_items(mv2_onnx, make_photo, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    items = [make_photo(100, 100, 1), bad, make_photo(100, 100, 2), b"", make_photo(100, 100, 3)]
    out = list(Scorer(mv2_onnx).iter_scores(items, batch_size=2))
    assert [o.ok for o in out] == [True, False, True, False, True]
    assert isinstance(out[1], ScoreError) and out[1].source == str(bad)
    assert "not a recognised image format" in out[1].reason
    assert "empty" in out[3].reason


def test_stream_is_lazy(mv2_onnx, make_photo):
    consumed = []

    def gen():
        for i in range(100):
            consumed.append(i)
            yield make_photo(64, 64, i)

    it = Scorer(mv2_onnx).iter_scores(gen(), batch_size=4)
    next(it)
    # One batch scored, one being decoded ahead: far from the 100 items of the album.
    assert len(consumed) <= 8


def test_rank_and_best_of_burst(mv2_onnx, make_photo):
    scorer = Scorer(mv2_onnx)
    photos = [make_photo(160, 120, seed=i) for i in range(6)]
    means = [scorer.score(p).mean for p in photos]
    ranked = scorer.rank(photos)
    assert [r.mean for r in ranked] == sorted(means, reverse=True)
    top2 = scorer.rank(photos, top_k=2)
    assert [r.mean for r in top2] == sorted(means, reverse=True)[:2]
    best = scorer.best_of_burst(photos)
    assert best.mean >= max(means) - 0.01 * 9
    with pytest.raises(ValueError, match="no frame of the burst"):
        scorer.best_of_burst([b"", b"junk"])


def test_percentile_from_calibration(mv2_model, tmp_path, make_photo):
    from tests.conftest import export_onnx_with_manifest
    from cskd_runtime.manifest import Calibration

    model, manifest = mv2_model
    cal = Calibration("test", "linear", tuple(1 + 9 * i / 100 for i in range(101)))
    path = export_onnx_with_manifest(model, manifest.replace(calibration=cal), tmp_path / "cal.onnx")
    r = Scorer(path).score(make_photo(100, 100))
    assert r.percentile == pytest.approx(100 * (r.mean - 1) / 9, abs=1e-6)


def test_model_without_manifest_is_refused(mv2_model, tmp_path):
    model, _ = mv2_model
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17)
    with pytest.raises(ModelLoadError, match="no cskd manifest embedded"):
        Scorer(path)


def test_manifest_that_disagrees_with_the_graph_is_refused(mv2_model, tmp_path):
    from tests.conftest import export_onnx_with_manifest

    model, manifest = mv2_model
    # The graph takes NCHW 224x224 but this manifest claims NHWC: the runtime must refuse, not guess.
    path = export_onnx_with_manifest(model, manifest, tmp_path / "m.onnx")
    import onnx

    from cskd_runtime.manifest import METADATA_KEY

    proto = onnx.load(str(path))
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            p.value = manifest.replace(input={"layout": "NHWC"}).to_json()
    onnx.save(proto, str(path))
    with pytest.raises(ModelLoadError, match="does not match manifest NHWC"):
        Scorer(path)


def test_format_detected_from_content_not_name(mv2_onnx, tmp_path):
    renamed = tmp_path / "model.tflite"
    renamed.write_bytes(mv2_onnx.read_bytes())
    assert detect_format(renamed) == "onnx"
    assert Scorer(renamed).backend.format == "onnx"
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="not an ONNX or TFLite model"):
        Scorer(junk)


def test_draft_decode_stays_within_tolerance(mv2_model, mv2_onnx, real_photos, tmp_path):
    """A 12 MP JPEG decoded with DCT downscaling scores within 0.02 (on 1..10) of a full decode, also when it
    is stored rotated (the runtime then shrinks before rotating)."""
    from PIL import Image

    scorer = Scorer(mv2_onnx)
    full_spec = scorer.manifest.input.__class__(**{**scorer.manifest.input.__dict__, "draft": False})
    deltas = []
    for i, src in enumerate(real_photos[:4]):
        big = Image.open(src).convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC)
        path = tmp_path / f"big{i}.jpg"
        if i % 2:  # a portrait photo stored landscape, as phones write them
            exif = Image.Exif()
            exif[0x0112] = 6
            big.save(path, quality=92, exif=exif.tobytes())
        else:
            big.save(path, quality=92)
        draft = scorer.score(path).mean
        full = scorer.score_tensor(preprocess(path, full_spec))[0].mean
        deltas.append(abs(draft - full))
    assert max(deltas) <= 0.02, deltas
