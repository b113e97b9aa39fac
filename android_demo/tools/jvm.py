"""Compile the demo's plain-Java core and run it on the desktop JVM: JUnit tests and the scoring CLI.

The core (``android_demo/core/src``) is compiled against the ONNX Runtime 1.29.0 Java API from the APK's AAR and
run with the native libraries prepared by :meth:`toolchain.Toolchain.jvm_native_dir`, so the JVM executes the
same classes, the same Java API and the same ORT release as the phone.

Usage::

    python android_demo/tools/jvm.py test --goldens DIR         # JUnit against golden files
    python android_demo/tools/jvm.py score --model M.onnx --out S.json photo.png ...
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

try:
    from .toolchain import DEMO_ROOT, Toolchain, ToolError
except ImportError:  # pragma: no cover - run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from toolchain import DEMO_ROOT, Toolchain, ToolError  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

__all__ = ["JvmBuild", "compile_all", "run_junit", "run_score", "JUnitResult", "main"]

CORE_SRC = DEMO_ROOT / "core" / "src"
CORE_TEST = DEMO_ROOT / "core" / "test"
JVM_SRC = DEMO_ROOT / "jvm" / "src"


@dataclass(frozen=True)
class JvmBuild:
    """Compiled class directories and the classpath to run them."""

    toolchain: Toolchain
    out: Path

    @property
    def main_classes(self) -> Path:
        return self.out / "core"

    @property
    def test_classes(self) -> Path:
        return self.out / "test"

    @property
    def cli_classes(self) -> Path:
        return self.out / "jvm"

    def classpath(self, tests: bool = False) -> str:
        parts = [str(self.main_classes), str(self.cli_classes), str(self.toolchain.ort_classes_jar)]
        if tests:
            parts += [str(self.test_classes), self.toolchain.junit_classpath]
        return os.pathsep.join(parts)

    def java(self, main: str, args: Sequence[str], *, tests: bool = False, props: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
        tc = self.toolchain
        cmd = [str(tc.java), "-Xss4m", *tc.jvm_ort_args(), *(f"-D{k}={v}" for k, v in (props or {}).items()),
               "-cp", self.classpath(tests), main, *args]  # fmt: skip
        logger.debug("running %s", " ".join(cmd))
        return subprocess.run(cmd, capture_output=True, text=True, env=tc.jvm_env(), timeout=timeout, check=False)


def _sources(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*.java"))


def _javac(tc: Toolchain, sources: list[str], out: Path, classpath: str, what: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # --release 8: the core must stay within the Java 8 library that Android's runtime offers.
    cmd = [str(tc.javac), "--release", "8", "-Xlint:-options", "-encoding", "UTF-8", "-d", str(out), "-cp", classpath,
           *sources]  # fmt: skip
    tc.run(cmd, f"javac ({what})")


def compile_all(tc: Toolchain, out: Path) -> JvmBuild:
    """Compile core, its JUnit tests and the JVM CLI into ``out``."""
    b = JvmBuild(tc, Path(out))
    t0 = time.perf_counter()
    _javac(tc, _sources(CORE_SRC), b.main_classes, str(tc.ort_classes_jar), "core")
    _javac(tc, _sources(JVM_SRC), b.cli_classes, os.pathsep.join([str(b.main_classes), str(tc.ort_classes_jar)]),
           "jvm cli")  # fmt: skip
    _javac(tc, _sources(CORE_TEST), b.test_classes,
           os.pathsep.join([str(b.main_classes), str(tc.ort_classes_jar), tc.junit_classpath]), "core tests")
    logger.info("compiled the Java core, tests and CLI in %.1f s", time.perf_counter() - t0)
    return b


@dataclass(frozen=True)
class JUnitResult:
    ok: bool
    run: int
    failures: int
    ignored: int
    output: str


def junit_test_classes(build: JvmBuild) -> list[str]:
    return sorted(
        str(p.relative_to(build.test_classes).with_suffix("")).replace(os.sep, ".")
        for p in build.test_classes.rglob("*Test.class")
    )


def run_junit(build: JvmBuild, goldens: Path | None) -> JUnitResult:
    """Run every ``*Test`` class with JUnit 4; golden-file tests read ``goldens`` (``-Dcskd.goldens``)."""
    props = {"cskd.goldens": str(goldens)} if goldens else {}
    classes = junit_test_classes(build)
    if not classes:
        raise ToolError(f"no JUnit test classes under {build.test_classes}")
    res = build.java("org.junit.runner.JUnitCore", classes, tests=True, props=props)
    out = res.stdout + res.stderr
    m = re.search(r"OK \((\d+) tests?\)", out)
    if m:
        return JUnitResult(res.returncode == 0, int(m.group(1)), 0, 0, out)
    m = re.search(r"Tests run: (\d+),\s+Failures: (\d+)", out)
    run, failures = (int(m.group(1)), int(m.group(2))) if m else (0, -1)
    return JUnitResult(False, run, failures, 0, out)


def run_score(build: JvmBuild, model: Path, photos: Sequence[Path], out: Path, *, threads: int = 1,
              benchmark: int = 0) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Score photos (or benchmark the first one) with :class:`org.cskd.demo.jvm.ScoreCli`; JSON lands in ``out``."""
    args = ["--model", str(model), "--out", str(out), "--threads", str(threads)]
    if benchmark:
        args += ["--benchmark", str(benchmark)]
    res = build.java("org.cskd.demo.jvm.ScoreCli", [*args, *map(str, photos)])
    if res.returncode != 0:
        raise ToolError(f"ScoreCli failed (exit {res.returncode}): {(res.stdout + res.stderr)[-3000:]}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("test", help="compile and run the JUnit tests")
    t.add_argument("--goldens", type=Path, help="golden directory written by android_demo/tools/goldens.py")
    s = sub.add_parser("score", help="score photos on the JVM with ORT's Java API")
    s.add_argument("--model", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--benchmark", type=int, default=0, help="run the benchmark mode with N iterations")
    s.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--build-dir", type=Path, default=DEMO_ROOT / "build" / "jvm")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build = compile_all(Toolchain.ensure(), args.build_dir)
        if args.cmd == "test":
            r = run_junit(build, args.goldens)
            print(r.output)
            return 0 if r.ok else 1
        run_score(build, args.model, args.photos, args.out, threads=args.threads, benchmark=args.benchmark)
        print(args.out)
        return 0
    except (ToolError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
