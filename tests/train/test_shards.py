"""Unlabeled data: tar shards (round trip, splitting, weighted mixing, corrupt data) and folder mixing."""

from __future__ import annotations

import collections
import io
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cskd_train.data.folders import list_images, mix_unlabeled
from cskd_train.data.items import LabeledItem, gaussian_distribution
from cskd_train.data.shards import ShardImages, write_shards

# --------------------------------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------------------------------


def _save(img: Image.Image, path: Path, exif_orientation: int | None = None) -> Path:
    if path.suffix == ".png":
        img.save(path)
    else:
        exif = Image.Exif()
        if exif_orientation:
            exif[0x0112] = exif_orientation
        img.save(path, quality=90, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[LabeledItem]:
    """30 small labeled photos: JPEG and PNG (with odd-looking names), one rotated by EXIF."""
    from tests.conftest import photo_like

    d = tmp_path_factory.mktemp("photos")
    items = []
    for i in range(30):
        ext = ".png" if i % 5 == 0 else ".jpeg" if i % 7 == 0 else ".jpg"
        p = _save(photo_like(40, 24, seed=i), d / f"img.{i} v{i}{ext}", exif_orientation=6 if i == 3 else None)
        items.append(LabeledItem(str(p), gaussian_distribution(2 + i / 5, 1.2)))
    return items


@pytest.fixture(scope="module")
def shards(photos, tmp_path_factory) -> list[str]:
    return write_shards(photos, tmp_path_factory.mktemp("shards") / "set-%03d.tar", maxcount=10)


def test_round_trip_keys_labels_and_decoding(photos, shards):
    assert [Path(s).name for s in shards] == ["set-000.tar", "set-001.tar", "set-002.tar"]
    assert not list(Path(shards[0]).parent.glob(".*"))  # no temp files left behind
    got = list(ShardImages(shards, shuffle=0))
    assert len(got) == 30 and all(len(t) == 3 for t in got)
    keys = [k for k, _, _ in got]
    assert len(set(keys)) == 30 and all("." not in k for k in keys)
    by_index = {int(k.split("_", 1)[0]): (img, dist) for k, img, dist in got}
    for i, item in enumerate(photos):
        img, dist = by_index[i]
        np.testing.assert_allclose(dist, item.dist, rtol=1e-6)
        assert img.mode == "RGB"
        # EXIF orientation 6 is applied, as the phone-side decoder does: 40x24 becomes 24x40.
        assert img.size == ((24, 40) if i == 3 else (40, 24))
    # Bytes are stored as-is: the PNG decodes to exactly the original pixels.
    np.testing.assert_array_equal(np.asarray(by_index[0][0]), np.asarray(Image.open(photos[0].path).convert("RGB")))
    # Unlabeled view and shuffled order.
    plain = list(ShardImages(shards, shuffle=8, seed=1, with_labels=False))
    assert all(len(t) == 2 for t in plain) and sorted(k for k, _ in plain) == sorted(keys)
    assert [k for k, _ in plain] != keys


def test_unlabeled_paths_and_bad_inputs(photos, tmp_path):
    out = write_shards([p.path for p in photos[:4]], tmp_path / "u-%02d.tar", maxcount=3)
    assert len(out) == 2
    got = list(ShardImages(out, shuffle=0))
    assert len(got) == 4 and all(len(t) == 2 for t in got)
    with pytest.raises(ValueError, match="integer field"):
        write_shards([photos[0].path], tmp_path / "nofield.tar")
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        write_shards([photos[0].path, str(tmp_path / "gone.jpg")], tmp_path / "g-%02d.tar")
    assert not list(tmp_path.glob("g-*")) and not list(tmp_path.glob(".g-*"))  # nothing half-written


def test_split_by_rank_and_worker_partitions_shards(shards, monkeypatch):
    seen = []
    for rank, worker in itertools.product(range(2), range(2)):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("WORKER", str(worker))
        monkeypatch.setenv("NUM_WORKERS", "2")
        seen.append({k for k, *_ in ShardImages(shards + shards[:1], shuffle=0, with_labels=False)})
    # 4 shards (one listed twice) over 2 ranks x 2 workers: one shard each, disjoint except the duplicate.
    assert [len(s) for s in seen] == [10, 10, 10, 10]
    assert len(set().union(*seen)) == 30


def test_dataloader_workers_read_each_sample_once(shards):
    import torch.utils.data

    ds = ShardImages(shards, shuffle=0, with_labels=False)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=lambda x: x[0])
    keys = list(dl)
    assert len(keys) == 30 and len(set(keys)) == 30


def test_weighted_mix_respects_weights_and_seed(photos, tmp_path):
    a = write_shards(photos[:20], tmp_path / "a-%02d.tar", maxcount=5)
    b = write_shards([p.path for p in photos[20:]], tmp_path / "b-%02d.tar", maxcount=5)
    a_keys = {k for k, *_ in ShardImages(a, shuffle=0)}

    def draw(seed, n=2000):
        ds = ShardImages([a, b], weights=[3, 1], seed=seed, shuffle=16, with_labels=False, draft_size=(8, 8))
        return [k for k, _ in itertools.islice(ds, n)]

    s0 = draw(0)
    frac_a = sum(k in a_keys for k in s0) / len(s0)
    assert abs(frac_a - 0.75) < 0.04, frac_a  # binomial sd ~0.01
    assert draw(0, 300) == s0[:300]  # seeded: reproducible
    assert draw(1, 300) != s0[:300]
    # Every sample of both sets shows up over many draws (resampled shards, not one stuck shard).
    assert len(set(s0)) == 30


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_corrupt_member_and_truncated_shard_are_logged_and_skipped(photos, tmp_path, caplog):
    good = Path(photos[1].path).read_bytes()
    bad_shard = tmp_path / "bad-000.tar"
    bad_shard.write_bytes(_tar_bytes({
        "k1.jpg": good, "k1.json": json.dumps({"dist": [0.1] * 10}).encode(),
        "k2.jpg": b"\xff\xd8\xff\xe0 this is not really a jpeg",
        "k3.jpg": good[: len(good) // 3],
        "k4.jpg": good,
    }))  # fmt: skip
    whole = Path(write_shards(photos[:10], tmp_path / "ok-%03d.tar", maxcount=10)[0]).read_bytes()
    cut = tmp_path / "cut-000.tar"
    cut.write_bytes(whole[: len(whole) // 2 + 100])
    with caplog.at_level(logging.WARNING, logger="cskd_train.data.shards"):
        got = list(ShardImages([str(bad_shard), str(cut)], shuffle=0))
    keys = [t[0] for t in got]
    assert keys[:2] == ["k1", "k4"] and len(got[0]) == 3 and len(got[1]) == 2
    assert 2 <= len(keys) - 2 < 10  # the intact part of the cut shard is still read
    msgs = [r.getMessage() for r in caplog.records]
    assert any(str(bad_shard) in m and "k2" in m and "corrupt" in m for m in msgs)
    assert any(str(bad_shard) in m and "k3" in m for m in msgs)
    assert any("cut-000.tar" in m for m in msgs)


# --------------------------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------------------------


def _folder(root: Path, name: str, n: int) -> Path:
    d = root / name
    (d / "sub").mkdir(parents=True)
    for i in range(n):
        (d / ("sub" if i % 2 else "") / f"{name}{i:03d}.{'JPG' if i % 3 == 0 else 'png'}").write_bytes(b"x")
    return d


def test_list_images_filters_hidden_and_extensions(tmp_path):
    d = _folder(tmp_path, "a", 6)
    (d / ".hidden.jpg").write_bytes(b"x")
    (d / "._a000.JPG").write_bytes(b"x")
    (d / "notes.txt").write_bytes(b"x")
    (d / ".thumbs").mkdir()
    (d / ".thumbs" / "t.jpg").write_bytes(b"x")
    got = list_images(d)
    assert got == sorted(got) and len(got) == 6
    assert all(Path(p).suffix.lower() in (".jpg", ".png") and "/." not in p for p in got)
    assert len(list_images(d, recursive=False)) == 3
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(tmp_path / "nope")


def test_mix_unlabeled_proportions_replacement_and_seed(tmp_path, caplog):
    a, b, c = _folder(tmp_path, "a", 60), _folder(tmp_path, "b", 30), _folder(tmp_path, "c", 6)
    srcs = [dict(path=a, weight=0.5), dict(path=b, weight=0.3), dict(path=c, weight=0.2)]
    with caplog.at_level(logging.INFO, logger="cskd_train.data.folders"):
        mixed = mix_unlabeled(srcs, total=101, seed=3)
    by_src = collections.Counter(Path(p).relative_to(tmp_path).parts[0] for p in mixed)
    assert len(mixed) == 101 and by_src == {"a": 51, "b": 30, "c": 20}  # largest remainder: 50.5, 30.3, 20.2
    assert len({p for p in mixed if "/a/" in p}) == 51  # a and b: without replacement
    c_counts = collections.Counter(p for p in mixed if "/c/" in p)
    assert sorted(c_counts.values()) == [3, 3, 3, 3, 4, 4]  # c: 6 images for 20 slots, each 3-4 times
    assert any(str(c) in r.getMessage() and "with replacement" in r.getMessage() for r in caplog.records)
    assert mix_unlabeled(srcs, total=101, seed=3) == mixed
    again = mix_unlabeled(srcs, total=101, seed=4)
    assert again != mixed and collections.Counter(Path(p).relative_to(tmp_path).parts[0] for p in again) == by_src
    # Interleaved, not one source after the other.
    assert len({Path(p).relative_to(tmp_path).parts[0] for p in mixed[:20]}) == 3
    assert len(mix_unlabeled([dict(path=a), dict(path=b)])) == 90
    with pytest.raises(ValueError, match="weight"):
        mix_unlabeled([dict(path=a, weight=-1)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images"):
        mix_unlabeled([dict(path=a), dict(path=tmp_path / "empty")])
