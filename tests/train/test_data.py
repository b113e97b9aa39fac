"""Data specs (CSV, folders, weighted mixes, dataset adapters), training views and the eval contract."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from cskd_runtime.manifest import InputSpec
from cskd_runtime.preprocess import preprocess
from cskd_train.data.datasets import EvalView, LabeledDataset, TrainView, UnlabeledDataset, collate_skip
from cskd_train.data.items import LabeledItem, gaussian_distribution
from cskd_train.data.sources import DataSpecError, list_images, load_labeled, load_unlabeled, mix_sources


def _csv(path, text):
    path.write_text(text)
    return path


def test_csv_distribution_or_mean_columns(tmp_path):
    (tmp_path / "sub").mkdir()
    f = _csv(tmp_path / "sub" / "l.csv", "path,p1,p2,p3,note\na.jpg,1,1,2,x\n/abs/b.jpg,0,0,5,y\n")
    items = load_labeled({"format": "csv", "path": "sub/l.csv"}, tmp_path, num_bins=3)
    assert items[0].path == str(tmp_path / "sub" / "a.jpg")  # relative to the CSV's folder
    assert items[1].path == "/abs/b.jpg"
    assert np.allclose(items[0].dist, [0.25, 0.25, 0.5]) and items[0].dist.dtype == np.float32
    m = _csv(tmp_path / "m.csv", "path,mean,std\na.jpg,6.5,0.8\nb.jpg,3,\n")
    items = load_labeled({"format": "csv", "path": str(m), "default_std": 1.5}, None)
    assert np.allclose(items[0].dist, gaussian_distribution(6.5, 0.8))
    assert np.allclose(items[1].dist, gaussian_distribution(3.0, 1.5))
    assert f.exists()


@pytest.mark.parametrize(
    "text, match",
    [
        ("file,mean\na,5\n", "no 'path' column"),
        ("path,score\na,5\n", r"needs distribution columns p1..p10 or a 'mean'"),
        ("path,p1,p3\na,1,1\n", "p1..pK without gaps"),
        ("path,mean\na,5\nb,lots\n", r"l.csv:3: bad number"),
        ("path,mean\na,12\n", r"l.csv:2: mean 12.0 outside 1..10"),
        ("path,p1,p2,p3,p4,p5,p6,p7,p8,p9,p10\na,0,0,0,0,0,0,0,0,0,0\n", r"l.csv:2: all counts are zero"),
        ("path,mean\n,5\n", r"l.csv:2: empty path"),
        ("path,mean\n", "no rows"),
    ],
)
def test_csv_errors_name_file_and_row(tmp_path, text, match):
    _csv(tmp_path / "l.csv", text)
    with pytest.raises(DataSpecError, match=match):
        load_labeled({"format": "csv", "path": "l.csv"}, tmp_path)


def test_dataset_adapters_are_delegated_lazily(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("cskd_train.data.labels")
    fake.read_ava = lambda table, image_dir, split=None, num_bins=10: calls.append(("ava", table, image_dir, split)) or [
        LabeledItem(str(image_dir / "1.jpg"), np.full(num_bins, 1 / num_bins, np.float32))]
    fake.read_aadb = lambda table, image_dir, num_bins=10: calls.append(("aadb",)) or [LabeledItem("x", np.full(10, 0.1, np.float32))]
    fake.read_para = lambda table, image_dir, num_bins=10: calls.append(("para",)) or [LabeledItem("y", np.full(5, 0.2, np.float32))]
    monkeypatch.setitem(sys.modules, "cskd_train.data.labels", fake)
    import cskd_train.data as pkg

    monkeypatch.setattr(pkg, "labels", fake, raising=False)
    items = load_labeled({"format": "ava", "table": "AVA.txt", "image_dir": "img", "split": "train.txt"}, tmp_path)
    assert calls[0] == ("ava", tmp_path / "AVA.txt", tmp_path / "img", tmp_path / "train.txt")
    assert items[0].path == str(tmp_path / "img" / "1.jpg")
    assert load_labeled({"format": "aadb", "table": "t", "image_dir": "i"}, tmp_path)[0].path == "x"
    with pytest.raises(DataSpecError, match="5 bins, config says 10"):
        load_labeled({"format": "para", "table": "t", "image_dir": "i"}, tmp_path)
    assert load_unlabeled({"format": "ava", "table": "AVA.txt", "image_dir": "img"}, tmp_path) == [
        str(tmp_path / "img" / "1.jpg")]
    with pytest.raises(DataSpecError, match="unknown format 'avaa'"):
        load_labeled({"format": "avaa"}, tmp_path)


def test_folders_and_weighted_mixes(tmp_path):
    for src, n in (("a", 10), ("b/deep", 4)):
        d = tmp_path / src
        d.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4)).save(d / f"{i}.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    assert len(list_images(tmp_path / "a")) == 10
    assert len(list_images(tmp_path / "b")) == 4  # recursive
    spec = {"sources": [{"format": "folder", "path": "a", "weight": 1}, {"format": "folder", "path": "b", "weight": 3}],
            "size": 40, "seed": 5}  # fmt: skip
    mixed = load_unlabeled(spec, tmp_path)
    assert mixed == load_unlabeled(spec, tmp_path)  # deterministic
    from_b = sum("/b/" in p for p in mixed)
    assert len(mixed) == 40 and from_b == 30  # weights 1:3
    bs = [p for p in mixed if "/b/" in p]
    assert len(set(bs[:0] + bs)) == 4  # the small source is cycled whole, every image used
    assert load_unlabeled({**spec, "seed": 6}, tmp_path) != mixed
    default_size = load_unlabeled({"sources": spec["sources"]}, tmp_path)
    assert len(default_size) == 14
    with pytest.raises(DataSpecError, match="no images"):
        list_images(tmp_path / "a" / "..", recursive=False)
    with pytest.raises(DataSpecError, match="weights must be non-negative"):
        mix_sources([["x"]], [-1])
    with pytest.raises(DataSpecError, match="has 'sources' and also \\['path'\\]"):
        load_unlabeled({**spec, "path": "elsewhere"}, tmp_path)
    with pytest.raises(DataSpecError, match="shards cannot be mixed with file sources"):
        load_unlabeled({"sources": [{"format": "shards", "urls": "x.tar"}, {"format": "folder", "path": "a"}]}, tmp_path)


def test_eval_view_is_the_runtime_contract_and_train_view_is_deterministic(tmp_path, make_photo):
    photo = make_photo(96, 64, seed=2)
    p = tmp_path / "p.jpg"
    photo.save(p, quality=95)
    spec = InputSpec(height=32, width=32, resize_height=40, resize_width=40, mean=(0.5,) * 3, std=(0.25,) * 3)
    ev = EvalView(spec)
    assert torch.equal(ev(ev.load(str(p))), torch.from_numpy(preprocess(str(p), spec)[0]))
    tv = TrainView(spec, size=32, resize=40, seed=1)
    img = tv.load(str(p))
    a, b = tv(img, epoch=0, index=3), tv(img, epoch=0, index=3)
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    views = {tv.params(e, i) for e in range(4) for i in range(8)}
    assert len(views) > 16  # crops and flips vary over epochs and images
    flips = [tv.params(0, i)[2] for i in range(200)]
    assert 0.35 < np.mean(flips) < 0.65
    assert all(0 <= tv.params(0, i)[0] <= 8 for i in range(50))
    assert not any(TrainView(spec, 32, 40, hflip=False).params(0, i)[2] for i in range(50))


def test_exif_rotation_is_applied_before_the_view(tmp_path, make_photo):
    upright = make_photo(64, 48, seed=3)
    upright.save(tmp_path / "up.png")
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored rotated
    exif = Image.Exif()
    exif[0x0112] = 6  # viewer applies ROTATE_270, undoing the ROTATE_90 above
    rotated.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    upright.save(tmp_path / "up.jpg", quality=100)
    spec = InputSpec(height=32, width=32, resize_height=40, resize_width=40)
    ev = EvalView(spec)
    a = ev(ev.load(str(tmp_path / "up.jpg")))
    b = ev(ev.load(str(tmp_path / "rot.jpg")))
    assert (a - b).abs().mean() < 0.05


def test_undecodable_images_are_logged_and_skipped(tmp_path, caplog):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff this is not a jpeg")
    spec = InputSpec(height=8, width=8, resize_height=8, resize_width=8)
    items = [LabeledItem(str(good), np.full(10, 0.1, np.float32)), LabeledItem(str(bad), np.full(10, 0.1, np.float32))]
    ds = LabeledDataset(items, EvalView(spec))
    with caplog.at_level(logging.WARNING):
        batch = collate_skip([ds[0], ds[1]])
    assert batch[0].shape == (1, 3, 8, 8) and batch[2].tolist() == [0]
    assert str(bad) in caplog.text
    un = UnlabeledDataset([str(bad)], EvalView(spec))
    assert collate_skip([un[0]]) is None
