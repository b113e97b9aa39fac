"""Paths and runners for the fetched Android toolchain, and ONNX Runtime's Java API on a desktop JVM.

:func:`Toolchain.ensure` fetches the pinned packages (:mod:`fetch`), checks the JDK (installing Debian's
``openjdk-17-jdk-headless`` when it is missing and we are root) and that the extracted Debian binaries find
their shared libraries (installing the missing system ones the same way), and returns a :class:`Toolchain`.

ONNX Runtime on the JVM
-----------------------
The APK ships ORT 1.29.0's Java API (``classes.jar``) and its JNI glue ``libonnxruntime4j_jni.so`` from the AAR.
To run *that same Java API* here, :meth:`Toolchain.jvm_native_dir` prepares a directory with

* ``libonnxruntime.so``: ORT 1.29.0 built for linux-x64 (same release, from the same npm package), and
* ``libonnxruntime4j_jni.so``: the AAR's **x86_64** JNI glue, patched so glibc can load a library built against
  Android's bionic libc (:func:`patch_bionic_jni`): its version requirements on bionic's ``LIBC`` become weak
  and its libc imports unversioned (the ten functions it imports, malloc/free/memcpy/strlen/..., have the same
  x86-64 ABI in both libcs), and the relocation of ``OrtSessionOptionsAppendExecutionProvider_Nnapi`` (an
  Android-only entry point absent from the linux library) is turned into a no-op, so NNAPI is unavailable on the
  JVM and everything else is ORT's own code;
* ``libc.so``, ``libm.so``, ``libdl.so``: links to the running glibc, the names bionic libraries ask for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

try:  # run as a script (python android_demo/tools/build_apk.py) or imported as android_demo.tools.*
    from . import fetch
except ImportError:  # pragma: no cover
    import fetch  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

__all__ = ["ToolError", "Toolchain", "patch_bionic_jni", "DEMO_ROOT"]

DEMO_ROOT = Path(__file__).resolve().parents[1]
JDK_PACKAGE = "openjdk-17-jdk-headless"
# Debian packages that provide the system libraries the extracted aapt2/zipalign link against.
_SYSTEM_LIB_PACKAGES = {"libexpat.so.1": "libexpat1", "libpng16.so.16": "libpng16-16", "libbsd.so.0": "libbsd0",
                        "libz.so.1": "zlib1g", "libstdc++.so.6": "libstdc++6", "libmd.so.0": "libmd0"}


class ToolError(RuntimeError):
    """A build tool is missing or failed; the message says which and how to fix it."""


def _apt_install(packages: Sequence[str], why: str) -> None:
    """Install Debian packages non-interactively (CI machines are clean and we run as root there)."""
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise ToolError(f"{why}: install {' '.join(packages)} (apt-get, as root) and rerun")
    logger.info("installing %s (%s)", " ".join(packages), why)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:  # stale package lists on a fresh machine: refresh once
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, env=env, check=False)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise ToolError(f"{why}: apt-get install {' '.join(packages)} failed: {res.stderr.strip()[-600:]}")


def _find_jdk() -> Path | None:
    """JAVA_HOME with java, javac and keytool, from $JAVA_HOME or PATH."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    javac = shutil.which("javac")
    if javac:
        candidates.append(Path(os.path.realpath(javac)).parents[1])
    for home in candidates:
        if all((home / "bin" / t).is_file() for t in ("java", "javac", "keytool")):
            return home
    return None


@dataclass(frozen=True)
class Toolchain:
    """Everything the build and the JVM tests run, as absolute paths."""

    cache: Path
    java_home: Path

    # ------------------------------------------------------------------ construction
    @classmethod
    def ensure(cls) -> "Toolchain":
        """Fetch pinned packages, check the JDK and the host binaries; install what the machine lacks.

        Raises:
            fetch.SourceVanished: a pinned package is no longer served (callers may skip on this).
            fetch.FetchError, ToolError: anything else.
        """
        cache = fetch.ensure()
        home = _find_jdk()
        if home is None:
            _apt_install([JDK_PACKAGE], "no JDK (java, javac, keytool) found")
            home = _find_jdk()
            if home is None:
                raise ToolError(f"installed {JDK_PACKAGE} but still found no javac; set JAVA_HOME")
        tc = cls(cache=cache, java_home=home)
        tc._check_host_binaries()
        return tc

    def _check_host_binaries(self) -> None:
        missing: set[str] = set()
        for tool in (self.aapt2, self.zipalign):
            res = subprocess.run(["ldd", str(tool)], capture_output=True, text=True, env=self.host_env(), check=False)
            for line in res.stdout.splitlines():
                if "not found" in line:
                    missing.add(line.split()[0])
        if missing:
            unknown = sorted(m for m in missing if m not in _SYSTEM_LIB_PACKAGES)
            if unknown:
                raise ToolError(f"aapt2/zipalign need {unknown}, which neither the lock nor the system provides")
            _apt_install(sorted({_SYSTEM_LIB_PACKAGES[m] for m in missing}), f"system libraries {sorted(missing)}")

    # ------------------------------------------------------------------ paths
    def _p(self, pkg: str, rel: str) -> Path:
        return self.cache / pkg / rel

    @property
    def java(self) -> Path:
        return self.java_home / "bin" / "java"

    @property
    def javac(self) -> Path:
        return self.java_home / "bin" / "javac"

    @property
    def keytool(self) -> Path:
        return self.java_home / "bin" / "keytool"

    @property
    def aapt2(self) -> Path:
        return self._p("aapt2", "bin/aapt2")

    @property
    def zipalign(self) -> Path:
        return self._p("zipalign", "bin/zipalign")

    @property
    def android_jar(self) -> Path:
        return self._p("android-jar", "android-23.jar")

    @property
    def d8_jar(self) -> Path:
        return self._p("d8", "bundletool-all.jar")

    @property
    def apksigner_classpath(self) -> str:
        return os.pathsep.join(str(p) for p in (self._p("apksigner", "jars/apksigner.jar"),
                                                self._p("apksig", "jars/apksig.jar")))

    @property
    def junit_classpath(self) -> str:
        return os.pathsep.join(str(p) for p in (self._p("junit4", "jars/junit4.jar"),
                                                self._p("hamcrest", "jars/hamcrest.jar")))

    @property
    def ort_classes_jar(self) -> Path:
        return self._p("onnxruntime", "ort/classes.jar")

    def ort_jni_dir(self, abi: str) -> Path:
        return self._p("onnxruntime", f"ort/jni/{abi}")

    @property
    def ort_license_files(self) -> list[Path]:
        return [self._p("onnxruntime", "ort/LICENSE"), self._p("onnxruntime", "ort/ThirdPartyNotices.txt")]

    def host_env(self) -> dict[str, str]:
        """Environment for the extracted Debian binaries: their libraries first on the loader path."""
        libs = sorted(str(p) for p in self.cache.glob("*/lib") if p.is_dir())
        old = os.environ.get("LD_LIBRARY_PATH")
        return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(libs + ([old] if old else []))}

    # ------------------------------------------------------------------ runners
    def run(self, cmd: Sequence[str | os.PathLike[str]], what: str, *, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run a tool; raise :class:`ToolError` with its output when it fails."""
        args = [str(c) for c in cmd]
        logger.debug("running %s", " ".join(args))
        res = subprocess.run(args, capture_output=True, text=True, env=env or self.host_env(), cwd=cwd, check=False)
        if res.returncode != 0:
            out = (res.stdout + res.stderr).strip()
            raise ToolError(f"{what} failed (exit {res.returncode}): {out[-2000:]}")
        return res

    def aapt2_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        return [str(self.aapt2), *map(str, args)]

    def zipalign_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        return [str(self.zipalign), *map(str, args)]

    def apksigner_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        return [str(self.java), "-cp", self.apksigner_classpath, "com.android.apksigner.ApkSignerTool", *map(str, args)]

    def d8_cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        return [str(self.java), "-Xmx1g", "-cp", str(self.d8_jar), "com.android.tools.r8.D8", *map(str, args)]

    # ------------------------------------------------------------------ ORT on the JVM
    def jvm_native_dir(self) -> Path:
        """Directory with ORT 1.29.0 native libraries loadable by a desktop JVM (see the module docstring)."""
        src_ort = self._p("onnxruntime", "ort/linux-x64/libonnxruntime.so")
        src_jni = self._p("onnxruntime", "ort/jni/x86_64/libonnxruntime4j_jni.so")
        libc = _loaded_glibc()
        key = hashlib.sha256(
            json.dumps([_sha256(src_ort), _sha256(src_jni), PATCH_VERSION, [str(p) for p in libc.values()]]).encode()
        ).hexdigest()[:16]
        out = self.cache / "jvm-native" / key
        if (out / ".complete").is_file():
            return out
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copy2(src_ort, tmp / "libonnxruntime.so")
        patch_bionic_jni(src_jni, tmp / "libonnxruntime4j_jni.so")
        for name, target in libc.items():
            os.symlink(target, tmp / name)
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        return out

    def jvm_env(self) -> dict[str, str]:
        """Environment for a JVM that loads ORT from :meth:`jvm_native_dir` (the JNI glue's NEEDED names)."""
        d = str(self.jvm_native_dir())
        old = os.environ.get("LD_LIBRARY_PATH")
        env = {**os.environ, "LD_LIBRARY_PATH": d + (os.pathsep + old if old else "")}
        env.pop("LD_BIND_NOW", None)
        return env

    def jvm_ort_args(self) -> list[str]:
        """JVM options that make ORT's Java API load the prepared libraries."""
        return [f"-Donnxruntime.native.path={self.jvm_native_dir()}"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _loaded_glibc() -> dict[str, Path]:
    """Paths of this process's libc/libm/libdl, under the bionic names the JNI glue asks for."""
    found: dict[str, Path] = {}
    with open("/proc/self/maps") as fh:
        for line in fh:
            path = line.rsplit(None, 1)[-1]
            base = os.path.basename(path)
            if base.startswith("libc.so.6") or base.startswith("libc-2."):
                found["libc.so"] = Path(path)
    libdir = found["libc.so"].parent if "libc.so" in found else Path("/lib/x86_64-linux-gnu")
    found.setdefault("libc.so", libdir / "libc.so.6")
    found["libm.so"] = libdir / "libm.so.6"
    found["libdl.so"] = libdir / "libdl.so.2"
    for name, p in found.items():
        if not p.exists():
            raise ToolError(f"cannot find glibc's {p.name} (for {name}); is this an x86-64 glibc Linux?")
    return found


# ------------------------------------------------------------------------------------------- ELF patching
PATCH_VERSION = 1
_BIONIC_FILES = (b"libc.so", b"libdl.so", b"libm.so")
_NEUTRALISED = (b"OrtSessionOptionsAppendExecutionProvider_Nnapi",)
_SHT_DYNSYM, _SHT_RELA = 11, 4
_SHT_GNU_VERNEED, _SHT_GNU_VERSYM = 0x6FFFFFFE, 0x6FFFFFFF
_VER_FLG_WEAK = 0x2


def patch_bionic_jni(src: Path, dst: Path) -> dict[str, int]:
    """Make an Android x86-64 JNI library loadable by glibc (see the module docstring). Returns what changed.

    Raises:
        ToolError: if the file is not the 64-bit little-endian ELF shared object expected.
    """
    b = bytearray(Path(src).read_bytes())
    if b[:4] != b"\x7fELF" or b[4] != 2 or b[5] != 1 or struct.unpack_from("<H", b, 18)[0] != 62:
        raise ToolError(f"{src}: not an x86-64 little-endian ELF file")
    shoff = struct.unpack_from("<Q", b, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", b, 0x3A)
    secs = []
    for i in range(shnum):
        _, typ, _, _, off, size, link, _, _, _ = struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize)
        secs.append((typ, off, size, link))

    def section(typ: int) -> tuple[int, int, int, int]:
        found = [s for s in secs if s[0] == typ]
        if not found:
            raise ToolError(f"{src}: no ELF section of type {typ:#x}")
        return found[0]

    def cstr(off: int) -> bytes:
        return bytes(b[off : b.index(0, off)])

    _, vr_off, _, vr_link = section(_SHT_GNU_VERNEED)
    _, vs_off, _, _ = section(_SHT_GNU_VERSYM)
    _, ds_off, ds_size, ds_link = section(_SHT_DYNSYM)
    vr_str = secs[vr_link][1]
    dyn_str = secs[ds_link][1]
    changed = {"weak_versions": 0, "unversioned_symbols": 0, "neutralised_relocations": 0}
    bionic_idx = set()
    off = vr_off
    while True:  # Elf64_Verneed list, each with its Elf64_Vernaux list
        _, cnt, file_off, aux, nxt = struct.unpack_from("<HHIII", b, off)
        fname = cstr(vr_str + file_off)
        a = off + aux
        for _ in range(cnt):
            _, flags, other, _, anext = struct.unpack_from("<IHHII", b, a)
            if fname in _BIONIC_FILES:
                struct.pack_into("<H", b, a + 4, flags | _VER_FLG_WEAK)
                bionic_idx.add(other)
                changed["weak_versions"] += 1
            if not anext:
                break
            a += anext
        if not nxt:
            break
        off += nxt
    nsyms = ds_size // 24
    for i in range(nsyms):
        v = struct.unpack_from("<H", b, vs_off + 2 * i)[0]
        if (v & 0x7FFF) in bionic_idx:
            struct.pack_into("<H", b, vs_off + 2 * i, 1)  # VER_NDX_GLOBAL: bind to glibc's default version
            changed["unversioned_symbols"] += 1
    for typ, off, size, _ in secs:
        if typ != _SHT_RELA:
            continue
        for i in range(size // 24):
            o = off + 24 * i
            info = struct.unpack_from("<Q", b, o + 8)[0]
            sym = info >> 32
            if sym and sym < nsyms:
                name = cstr(dyn_str + struct.unpack_from("<I", b, ds_off + 24 * sym)[0])
                if name in _NEUTRALISED:
                    struct.pack_into("<Q", b, o + 8, sym << 32)  # R_X86_64_NONE
                    changed["neutralised_relocations"] += 1
    if not changed["weak_versions"] or not changed["neutralised_relocations"]:
        raise ToolError(f"{src}: unexpected layout, patch not applicable ({changed}); was the AAR updated?")
    tmp = Path(str(dst) + ".tmp")
    tmp.write_bytes(bytes(b))
    os.replace(tmp, dst)
    return changed


if __name__ == "__main__":  # pragma: no cover - manual check
    logging.basicConfig(level=logging.INFO)
    tc = Toolchain.ensure()
    print(tc, tc.jvm_native_dir(), file=sys.stderr)
