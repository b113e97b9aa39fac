"""The signed APK built without Gradle: signature, alignment, badging and contents."""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.android


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def dex_types(dex: bytes) -> set[str]:
    """Type descriptors (``Lpkg/Cls;``) defined or referenced in a DEX file, read from its type_ids table."""
    assert dex[:4] == b"dex\n", "not a DEX file"
    n_str, str_off, n_types, types_off = struct.unpack_from("<IIII", dex, 0x38)
    out = set()
    for i in range(n_types):
        sidx = struct.unpack_from("<I", dex, types_off + 4 * i)[0]
        data_off = struct.unpack_from("<I", dex, str_off + 4 * sidx)[0]
        _, p = _uleb(dex, data_off)
        out.add(dex[p : dex.index(0, p)].decode("utf-8", "replace"))
    return out


def test_apk_is_signed_aligned_and_has_the_right_badging(demo_apk, android_toolchain):
    tc = android_toolchain
    apk = Path(demo_apk.apk)
    v = tc.run(tc.apksigner_cmd("verify", "--verbose", apk), "apksigner verify").stdout
    assert "Verified using v2 scheme (APK Signature Scheme v2): true" in v
    tc.run(tc.zipalign_cmd("-c", "-p", "4", apk), "zipalign -c -p 4")
    badging = tc.run(tc.aapt2_cmd("dump", "badging", apk), "aapt2 dump badging").stdout
    assert re.search(r"^package: name='org\.cskd\.demo' versionCode='1' versionName='0\.1\.0'", badging, re.M)
    assert "sdkVersion:'24'" in badging
    assert "targetSdkVersion:'29'" in badging
    assert "launchable-activity: name='org.cskd.demo.MainActivity'" in badging
    assert "native-code: 'arm64-v8a'" in badging
    assert "application-debuggable" in badging  # run-as must read files/benchmark.json
    print(f"\nAPK {demo_apk.size_bytes / 1e6:.1f} MB, build steps {demo_apk.seconds}")


def test_apk_contents_are_the_app_the_model_and_ort(demo_apk, android_toolchain, mv2_onnx):
    tc = android_toolchain
    with zipfile.ZipFile(demo_apk.apk) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        types = dex_types(zf.read("classes.dex"))
        for cls in ("Lorg/cskd/demo/MainActivity;", "Lorg/cskd/demo/PhotoProvider;", "Lorg/cskd/demo/R;",
                    "Lorg/cskd/demo/core/Resample;", "Lorg/cskd/demo/core/OrtModel;", "Lorg/cskd/demo/core/Benchmark;",
                    "Lai/onnxruntime/OrtSession;", "Lai/onnxruntime/OnnxTensor;"):
            assert cls in types, cls
        assert not any(t.startswith("Lorg/junit/") or t.startswith("Lorg/cskd/demo/jvm/") for t in types)
        model = infos["assets/model.onnx"]
        assert model.compress_type == zipfile.ZIP_STORED
        assert _sha(zf.read(model)) == _sha(Path(mv2_onnx).read_bytes())
        assert "assets/bench.jpg" in infos
        for lib in ("libonnxruntime.so", "libonnxruntime4j_jni.so"):
            info = infos[f"lib/arm64-v8a/{lib}"]
            assert info.compress_type == zipfile.ZIP_STORED
            assert _sha(zf.read(info)) == _sha((tc.ort_jni_dir("arm64-v8a") / lib).read_bytes())
        assert not any(n.startswith("lib/x86_64/") for n in infos)
        assert "assets/licenses/onnxruntime-LICENSE" in infos
        assert "AndroidManifest.xml" in infos and "resources.arsc" in infos


def test_tampered_apk_fails_verification(demo_apk, android_toolchain, tmp_path):
    """apksigner verify really checks the bytes: one flipped byte in the model asset breaks the signature."""
    tc = android_toolchain
    bad = tmp_path / "tampered.apk"
    shutil.copyfile(demo_apk.apk, bad)
    with zipfile.ZipFile(bad) as zf:
        info = zf.getinfo("assets/model.onnx")
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 1000
    with open(bad, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
    res = subprocess.run(tc.apksigner_cmd("verify", bad), capture_output=True, text=True, env=tc.host_env())
    assert res.returncode != 0


def test_build_cli_reports_a_missing_model(tmp_path, capsys):
    from android_demo.tools.build_apk import main

    assert main(["--model", str(tmp_path / "nope.onnx"), "--out", str(tmp_path / "x.apk")]) == 2
    assert "nope.onnx: file not found" in capsys.readouterr().err
