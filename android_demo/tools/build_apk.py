"""Build the signed Android demo APK without Gradle: aapt2, javac, D8, zip, zipalign, apksigner.

Steps (all tools from :mod:`fetch`'s pinned packages, see ``android_demo/README.md``):

1. check the model: it must carry a valid cskd manifest (read with ``cskd_runtime``);
2. ``aapt2 compile`` the resources and ``aapt2 link`` them with the manifest against the API 23 ``android.jar``
   (minSdk 24, targetSdk 29, debuggable so ``run-as`` can read the benchmark result);
3. ``javac`` (Java 8 language level, Android API 23 boot classpath) the core, the app, ``R`` and ``BuildInfo``;
4. ``D8`` the classes together with ONNX Runtime's ``classes.jar`` into ``classes.dex``;
5. zip: resources + dex + ``lib/<abi>/*.so`` and ``assets/model.onnx`` stored uncompressed (memory-mappable)
   + the benchmark photo + ORT's licence files;
6. ``zipalign -p 4`` (4-byte alignment, page-aligned native libraries), ``apksigner sign`` with a debug key
   generated on first use in the cache (never in the repository), then ``apksigner verify``,
   ``zipalign -c -p 4`` and ``aapt2 dump badging``.

Usage::

    python android_demo/tools/build_apk.py [--model M.onnx] [--photo P.jpg] [--out android_demo/build/cskd-demo.apk]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

try:
    from .toolchain import DEMO_ROOT, Toolchain, ToolError
except ImportError:  # pragma: no cover - run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from toolchain import DEMO_ROOT, Toolchain, ToolError  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

__all__ = ["BuildReport", "build_apk", "default_model", "make_bench_photo", "main"]

PACKAGE = "org.cskd.demo"
MIN_SDK = 24  # Android 7.0: ORT's Java API uses java.util.Optional (API 24)
TARGET_SDK = 29  # the newest API whose framework resources are in the pinned toolchain
ABIS = ("arm64-v8a", "x86_64")
APP = DEMO_ROOT / "app"
KEY_ALIAS = "androiddebugkey"
KEY_PASS = "android"  # the conventional Android debug-key password; the key signs demo builds only
# Fixed zip timestamps make the unsigned APK a function of its inputs.
_ZIP_TIME = (1981, 1, 1, 1, 1, 2)


def default_model() -> Path | None:
    """The runtime's bundled default model, if this checkout has one."""
    p = DEMO_ROOT.parent / "runtime" / "src" / "cskd_runtime" / "models" / "cskd-mv2-default.onnx"
    return p if p.is_file() else None


@dataclass
class BuildReport:
    """What was built and how long each step took."""

    apk: str
    size_bytes: int
    sha256: str
    package: str
    version_name: str
    version_code: int
    min_sdk: int
    target_sdk: int
    abis: list[str]
    model: str
    model_name: str
    model_sha256: str
    photo: str
    seconds: dict[str, float] = field(default_factory=dict)
    verify: str = ""
    badging: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def make_bench_photo(path: Path, size: tuple[int, int] = (1600, 1200), orientation: int = 6) -> Path:
    """A deterministic photo-like JPEG with an EXIF orientation, for APKs built without ``--photo``."""
    import numpy as np
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([120 + 90 * np.sin(xx / 97.0 + yy / 211.0), 110 + 80 * np.cos(yy / 53.0),
                    140 + 70 * np.sin((xx + yy) / 151.0)], axis=2)  # fmt: skip
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_model(model: Path) -> str:
    """Open the model with the Python runtime (validates the embedded manifest); return the model name."""
    from cskd_runtime.backends import open_backend

    backend = open_backend(model, threads=1)
    m = backend.manifest
    if backend.format != "onnx":
        raise ToolError(f"{model}: the APK runs ONNX models (ONNX Runtime 1.29.0); got a {backend.format} file")
    return m.model.name


def _ensure_debug_key(tc: Toolchain) -> Path:
    ks = tc.cache / "debug.keystore"
    if ks.is_file():
        return ks
    tmp = ks.with_name(f"debug.{os.getpid()}.keystore")
    tmp.unlink(missing_ok=True)
    tc.run([tc.keytool, "-genkeypair", "-keystore", tmp, "-storepass", KEY_PASS, "-keypass", KEY_PASS, "-alias",
            KEY_ALIAS, "-keyalg", "RSA", "-keysize", "2048", "-validity", "10000", "-dname",
            "CN=cskd demo debug, O=cskd, C=US", "-storetype", "PKCS12"], "keytool (debug key)")  # fmt: skip
    os.replace(tmp, ks)
    logger.info("generated a debug signing key at %s", ks)
    return ks


def _write_build_info(path: Path, version_name: str, version_code: int, model_sha: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "package org.cskd.demo;\n\n"
        "/** Generated by android_demo/tools/build_apk.py. */\n"
        "final class BuildInfo {\n"
        f"    static final String VERSION_NAME = {json.dumps(version_name)};\n"
        f"    static final int VERSION_CODE = {int(version_code)};\n"
        f"    static final String MODEL_SHA256 = {json.dumps(model_sha)};\n\n"
        "    private BuildInfo() {}\n"
        "}\n",
        encoding="utf-8",
    )


def _zip_add(zf: zipfile.ZipFile, name: str, data: bytes, stored: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def build_apk(model: Path, out: Path, *, photo: Path | None = None, abis: Sequence[str] = ("arm64-v8a",),
              version_name: str = "0.1.0", version_code: int = 1, toolchain: Toolchain | None = None,
              work_dir: Path | None = None) -> BuildReport:  # fmt: skip
    """Build, align, sign and verify the demo APK.

    Args:
        model: The ``.onnx`` model to bundle (its manifest drives preprocessing on the phone).
        out: Destination ``.apk``; a ``.json`` build report is written next to it.
        photo: Photo for the benchmark mode (default: a generated 1600x1200 JPEG with EXIF orientation 6).
        abis: Native library ABIs to ship (``arm64-v8a`` for phones; add ``x86_64`` for emulators).
        version_name: ``versionName``.
        version_code: ``versionCode``.
        toolchain: A ready toolchain (default: :meth:`Toolchain.ensure`).
        work_dir: Keep intermediate files there (default: a temporary directory, removed).

    Raises:
        ToolError: a step failed (the message has the tool's output); fetch errors from :mod:`fetch`.
    """
    model = Path(model).resolve()
    out = Path(out).resolve()
    bad = [a for a in abis if a not in ABIS]
    if bad or not abis:
        raise ToolError(f"unsupported ABI(s) {bad or abis}; choose from {ABIS}")
    t_all = time.perf_counter()
    seconds: dict[str, float] = {}

    def step(name: str, t0: float) -> None:
        seconds[name] = round(time.perf_counter() - t0, 2)
        logger.info("%-10s %.1f s", name, seconds[name])

    t0 = time.perf_counter()
    tc = toolchain or Toolchain.ensure()
    step("toolchain", t0)
    t0 = time.perf_counter()
    model_name = _check_model(model)
    model_sha = _sha256(model)
    step("model", t0)

    tmp_ctx = tempfile.TemporaryDirectory(prefix="cskd-apk-") if work_dir is None else None
    work = Path(tmp_ctx.name) if tmp_ctx else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if photo is None:
            photo = make_bench_photo(work / "bench.jpg")
        photo = Path(photo).resolve()

        # --- resources and manifest
        t0 = time.perf_counter()
        res_zip = work / "res.zip"
        tc.run(tc.aapt2_cmd("compile", "--dir", APP / "res", "-o", res_zip), "aapt2 compile")
        gen = work / "gen"
        gen.mkdir(exist_ok=True)
        base = work / "base.apk"
        tc.run(tc.aapt2_cmd("link", "-o", base, "-I", tc.android_jar, "--manifest", APP / "AndroidManifest.xml",
                            "--java", gen, "--min-sdk-version", str(MIN_SDK), "--target-sdk-version", str(TARGET_SDK),
                            "--version-code", str(version_code), "--version-name", version_name, "--debug-mode",
                            res_zip), "aapt2 link")  # fmt: skip
        step("resources", t0)

        # --- Java -> classes -> dex
        t0 = time.perf_counter()
        _write_build_info(gen / "org" / "cskd" / "demo" / "BuildInfo.java", version_name, version_code, model_sha)
        roots = (DEMO_ROOT / "core" / "src", APP / "src", gen)
        sources = sorted(str(p) for root in roots for p in root.rglob("*.java"))
        classes = work / "classes"
        classes.mkdir(exist_ok=True)
        tc.run([tc.javac, "-source", "8", "-target", "8", "-Xlint:-options", "-encoding", "UTF-8", "-bootclasspath",
                tc.android_jar, "-cp", tc.ort_classes_jar, "-d", classes, *sources], "javac (app)")  # fmt: skip
        app_jar = work / "app.jar"
        with zipfile.ZipFile(app_jar, "w") as zf:
            for p in sorted(classes.rglob("*.class")):
                zf.write(p, p.relative_to(classes).as_posix())
        step("javac", t0)
        t0 = time.perf_counter()
        dex_dir = work / "dex"
        dex_dir.mkdir(exist_ok=True)
        tc.run(tc.d8_cmd("--release", "--min-api", str(MIN_SDK), "--lib", tc.android_jar, "--output", dex_dir, app_jar,
                         tc.ort_classes_jar), "D8")  # fmt: skip
        dexes = sorted(dex_dir.glob("classes*.dex"))
        if not dexes:
            raise ToolError(f"D8 produced no classes.dex in {dex_dir}")
        step("d8", t0)

        # --- package
        t0 = time.perf_counter()
        unaligned = work / "unaligned.apk"
        with zipfile.ZipFile(base) as src, zipfile.ZipFile(unaligned, "w") as dst:
            for info in src.infolist():
                _zip_add(dst, info.filename, src.read(info), stored=info.compress_type == zipfile.ZIP_STORED)
            for d in dexes:
                _zip_add(dst, d.name, d.read_bytes(), stored=False)
            for abi in abis:
                for lib in ("libonnxruntime.so", "libonnxruntime4j_jni.so"):
                    # Stored so the platform maps them straight from the APK (extractNativeLibs=false).
                    _zip_add(dst, f"lib/{abi}/{lib}", (tc.ort_jni_dir(abi) / lib).read_bytes(), stored=True)
            _zip_add(dst, "assets/model.onnx", model.read_bytes(), stored=True)
            _zip_add(dst, "assets/bench.jpg", photo.read_bytes(), stored=True)
            for lic in tc.ort_license_files:
                _zip_add(dst, f"assets/licenses/onnxruntime-{lic.name}", lic.read_bytes(), stored=False)
        aligned = work / "aligned.apk"
        tc.run(tc.zipalign_cmd("-p", "-f", "4", unaligned, aligned), "zipalign")
        step("package", t0)

        # --- sign and verify
        t0 = time.perf_counter()
        ks = _ensure_debug_key(tc)
        out.parent.mkdir(parents=True, exist_ok=True)
        signed = out.with_name(out.name + ".tmp")
        tc.run(tc.apksigner_cmd("sign", "--ks", ks, "--ks-pass", f"pass:{KEY_PASS}", "--key-pass", f"pass:{KEY_PASS}",
                                "--ks-key-alias", KEY_ALIAS, "--out", signed, aligned), "apksigner sign")  # fmt: skip
        Path(str(signed) + ".idsig").unlink(missing_ok=True)
        verify = tc.run(tc.apksigner_cmd("verify", "--verbose", signed), "apksigner verify").stdout
        tc.run(tc.zipalign_cmd("-c", "-p", "4", signed), "zipalign -c")
        badging = tc.run(tc.aapt2_cmd("dump", "badging", signed), "aapt2 dump badging").stdout
        os.replace(signed, out)
        step("sign", t0)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    seconds["total"] = round(time.perf_counter() - t_all, 2)
    report = BuildReport(
        apk=str(out), size_bytes=out.stat().st_size, sha256=_sha256(out), package=PACKAGE, version_name=version_name,
        version_code=version_code, min_sdk=MIN_SDK, target_sdk=TARGET_SDK, abis=list(abis), model=str(model),
        model_name=model_name, model_sha256=model_sha, photo=str(photo), seconds=seconds, verify=verify,
        badging=badging,
    )  # fmt: skip
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(report.to_json() + "\n", encoding="utf-8")
    os.replace(tmp, out.with_suffix(".json"))
    logger.info("built %s (%.1f MB) in %.1f s", out, report.size_bytes / 1e6, seconds["total"])
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the signed cskd Android demo APK (no Gradle).")
    ap.add_argument("--model", type=Path, default=None,
                    help="exported .onnx (default: the runtime's bundled cskd-mv2-default.onnx)")
    ap.add_argument("--photo", type=Path, default=None, help="benchmark photo (default: a generated JPEG)")
    ap.add_argument("--out", type=Path, default=DEMO_ROOT / "build" / "cskd-demo.apk")
    ap.add_argument("--abis", default="arm64-v8a", help=f"comma-separated, from {','.join(ABIS)}")
    ap.add_argument("--version-name", default="0.1.0")
    ap.add_argument("--version-code", type=int, default=1)
    ap.add_argument("--keep-work", type=Path, default=None, help="keep intermediate files in this directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    model = args.model or default_model()
    if model is None:
        print("error: no --model given and this checkout has no runtime/src/cskd_runtime/models/"
              "cskd-mv2-default.onnx; export one with cskd-export and pass --model", file=sys.stderr)  # fmt: skip
        return 2
    if not Path(model).is_file():
        print(f"error: {model}: file not found", file=sys.stderr)
        return 2
    try:
        r = build_apk(Path(model), args.out, photo=args.photo, abis=[a for a in args.abis.split(",") if a],
                      version_name=args.version_name, version_code=args.version_code, work_dir=args.keep_work)
    except Exception as exc:  # tool failures, fetch failures, invalid models: one clear line
        from cskd_runtime.backends import ModelLoadError

        if not isinstance(exc, (ToolError, RuntimeError, ModelLoadError, ValueError, OSError)):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{r.apk}  {r.size_bytes / 1e6:.1f} MB  sha256 {r.sha256[:16]}…  ({r.seconds['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
