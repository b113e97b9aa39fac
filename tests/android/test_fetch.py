"""The pinned dependency lock and the fetcher's extraction (offline parts)."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest

pytestmark = pytest.mark.android


def test_lock_pins_every_package_and_file_by_sha256():
    from android_demo.tools.fetch import load_lock

    lock = load_lock()
    assert {"aapt2", "zipalign", "apksigner", "android-jar", "d8", "onnxruntime", "junit4"} <= set(lock.packages)
    for p in lock.packages.values():
        assert p.registry in ("debian", "pypi", "npm")
        assert len(p.sha256) == 64 and p.size > 0, p.id
        assert p.license, p.id
        for f in p.files:
            assert len(f.sha256) == 64, (p.id, f.src)
    ort = lock.packages["onnxruntime"]
    assert (ort.name, ort.version) == ("com.github.asus4.onnxruntime", "0.4.9")  # ORT 1.29.0 inside


def test_malformed_lock_names_the_file(tmp_path):
    from android_demo.tools.fetch import FetchError, load_lock

    p = tmp_path / "deps.lock.json"
    p.write_text(json.dumps({"packages": [{"id": "x", "registry": "maven", "name": "x", "version": "1",
                                           "files": []}]}))  # fmt: skip
    with pytest.raises(FetchError, match=r"deps\.lock\.json.*unknown registry 'maven'"):
        load_lock(p)


def test_extract_reaches_into_a_zip_inside_an_npm_tarball(tmp_path):
    from android_demo.tools.fetch import FetchError, FileSpec, Package, _extract

    aar = io.BytesIO()
    with zipfile.ZipFile(aar, "w") as zf:
        zf.writestr("jni/arm64-v8a/libx.so", b"ELF-ish")
        zf.writestr("classes.jar", b"PK-ish")
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        for name, data in (("package/lib.aar", aar.getvalue()), ("package/LICENSE", b"MIT")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    files = (FileSpec("package/lib.aar!jni/arm64-v8a/libx.so", "ort/libx.so"), FileSpec("package/LICENSE", "LICENSE"))
    pkg = Package("t", "npm", "t", "1", "pkg.tgz", "", 0, "MIT", files)
    got = _extract(pkg, tgz, tmp_path / "out")
    assert (tmp_path / "out" / "ort" / "libx.so").read_bytes() == b"ELF-ish"
    assert set(got) == {"ort/libx.so", "LICENSE"}
    missing = Package("t", "npm", "t", "1", "pkg.tgz", "", 0, "MIT", (FileSpec("package/lib.aar!nope.so", "n"),))
    with pytest.raises(FetchError, match="nope.so is not inside package/lib.aar"):
        _extract(missing, tgz, tmp_path / "out2")


def test_cache_is_intact_after_fetch(android_toolchain):
    from android_demo.tools.fetch import verify

    report = verify()
    assert report and all(not problems for problems in report.values()), report
