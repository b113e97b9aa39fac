"""Score photos: one, a batch, a whole album (streamed), ranked, or the best frame of a burst."""

from __future__ import annotations

import heapq
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, Union

import numpy as np

from .backends import Backend, ModelLoadError, open_backend
from .imageio import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource
from .manifest import Manifest
from .preprocess import preprocess

__all__ = ["ScoreResult", "ScoreError", "Scorer", "default_model_path"]

logger = logging.getLogger(__name__)

_MODELS_DIR = Path(__file__).resolve().parent / "models"
#: Which bundled file ``Scorer()`` opens; the fp32 ONNX is the reference artifact of the default model.
DEFAULT_MODEL_FILE = "cskd-mv2-default.onnx"


def default_model_path() -> Path:
    """Path of the default model bundled in the wheel.

    Raises:
        ModelLoadError: if this installation carries no default model.
    """
    p = _MODELS_DIR / DEFAULT_MODEL_FILE
    if not p.is_file():
        raise ModelLoadError(p, "this cskd-runtime installation has no bundled default model; pass a model path")
    return p


@dataclass(frozen=True)
class ScoreResult:
    """The score of one photo.

    Attributes:
        source: Path or description of the photo.
        mean: Mean score on the model's scale (``manifest.output.score_range``), ``sum(p_i * bin_i)``.
        std: Standard deviation of the predicted distribution: how much raters would disagree.
        distribution: Probability of each score bin.
        percentile: Percentile of ``mean`` against the manifest's calibration reference, if it has one.
        calibrated: ``mean`` mapped onto the calibration's target scale at the same percentile, if it has one.
    """

    source: str
    mean: float
    std: float
    distribution: tuple[float, ...]
    percentile: float | None = None
    calibrated: float | None = None
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": True,
            "mean": self.mean,
            "std": self.std,
            "percentile": self.percentile,
            "calibrated": self.calibrated,
            "distribution": list(self.distribution),
        }


@dataclass(frozen=True)
class ScoreError:
    """A photo that could not be scored, and why (returned by streaming APIs instead of raising)."""

    source: str
    reason: str
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "ok": False, "error": self.reason}


Outcome = Union[ScoreResult, ScoreError]


def _name(src: Any, index: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return f"<input {index}>"


class Scorer:
    """Scores photos with a cskd model (ONNX or TFLite) following the model's embedded manifest.

    Args:
        model: Path of a ``.onnx`` or ``.tflite`` file (format read from its content), or None for the bundled
            default model.
        threads: Inference threads (None: backend default, all cores).
        workers: Threads decoding and preprocessing photos in parallel for batches and albums. Pillow releases
            the GIL while decoding and resizing, so this overlaps well with inference.
        max_pixels: Largest photo accepted, checked from the header before decoding (decompression bombs).

    Example:
        >>> scorer = Scorer()                      # doctest: +SKIP
        >>> scorer.score("IMG_0001.jpg").mean      # doctest: +SKIP
        5.83
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        threads: int | None = None,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        path = Path(model) if model is not None else default_model_path()
        self.backend: Backend = open_backend(path, threads=threads)
        self.manifest: Manifest = self.backend.manifest
        self.workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        self.max_pixels = max_pixels
        self._bins = np.asarray(self.manifest.output.bins, dtype=np.float64)
        logger.info("loaded %s (%s, %s)", path, self.backend.format, self.manifest.model.name)

    @property
    def model_path(self) -> Path:
        return self.backend.path

    # ------------------------------------------------------------------ building blocks
    def preprocess(self, src: ImageSource, name: str | None = None) -> np.ndarray:
        """Decode and preprocess one photo into the float32 tensor this model expects (batch of 1).

        Raises:
            ImageDecodeError: naming the photo and the problem.
        """
        return preprocess(src, self.manifest.input, name=name, max_pixels=self.max_pixels)

    def _results(self, probs: np.ndarray, names: Sequence[str]) -> list[ScoreResult]:
        p = probs.astype(np.float64)
        means = p @ self._bins
        var = p @ (self._bins**2) - means**2
        cal = self.manifest.calibration
        out = []
        for name, row, m, v in zip(names, probs, means, var):
            out.append(
                ScoreResult(
                    source=name,
                    mean=float(m),
                    std=float(math.sqrt(max(float(v), 0.0))),
                    distribution=tuple(float(x) for x in row),
                    percentile=cal.percentile(float(m)) if cal else None,
                    calibrated=cal.to_target(float(m)) if cal else None,
                )
            )
        return out

    def score_tensor(self, x: np.ndarray, names: Sequence[str] | None = None) -> list[ScoreResult]:
        """Score an already preprocessed float32 batch (see :meth:`preprocess`)."""
        names = list(names) if names is not None else [f"<tensor {i}>" for i in range(x.shape[0])]
        return self._results(self.backend.run(x), names)

    # ------------------------------------------------------------------ public API
    def score(self, src: ImageSource) -> ScoreResult:
        """Score one photo (path, bytes, file object, PIL image or array).

        Raises:
            ImageDecodeError: if the photo cannot be decoded; the message names it and says why.
        """
        name = _name(src, 0)
        return self.score_tensor(self.preprocess(src, name=name), [name])[0]

    def score_batch(self, sources: Sequence[ImageSource], batch_size: int = 16) -> list[Outcome]:
        """Score several photos; a photo that fails yields a :class:`ScoreError` in its place (order kept)."""
        return list(self.iter_scores(sources, batch_size=batch_size))

    def iter_scores(self, sources: Iterable[ImageSource], batch_size: int = 16) -> Iterator[Outcome]:
        """Stream outcomes in input order with bounded memory, whatever the album size.

        Only ``batch_size`` decoded tensors (plus one batch being decoded ahead) are alive at any time, and
        ``sources`` is consumed lazily, so a generator over a 100k-photo folder is fine. A broken photo becomes
        a :class:`ScoreError` and never stops the album.
        """
        it = iter(enumerate(sources))
        batch_size = max(1, int(batch_size))

        def prep(item: tuple[int, ImageSource]) -> tuple[str, np.ndarray | None, str | None]:
            index, src = item
            name = _name(src, index)
            try:
                return name, self.preprocess(src, name=name), None
            except ImageDecodeError as exc:
                return name, None, exc.reason
            except MemoryError:
                return name, None, "out of memory while decoding"
            except Exception as exc:  # a decoder bug on one file must not sink the album
                logger.exception("unexpected error decoding %s", name)
                return name, None, f"unexpected decoding error ({type(exc).__name__}: {exc})"

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending = pool.map(prep, list(islice(it, batch_size)))
            while True:
                chunk = list(pending)
                if not chunk:
                    break
                # Decode the next batch while this one runs through the model.
                pending = pool.map(prep, list(islice(it, batch_size)))
                good = [(n, t) for n, t, err in chunk if err is None]
                scored: dict[int, ScoreResult] = {}
                if good:
                    results = self.score_tensor(np.concatenate([t for _, t in good]), [n for n, _ in good])
                    k = 0
                    for i, (_, t, err) in enumerate(chunk):
                        if err is None:
                            scored[i] = results[k]
                            k += 1
                for i, (name, _, err) in enumerate(chunk):
                    yield scored[i] if err is None else ScoreError(name, err or "unknown error")

    def rank(self, sources: Iterable[ImageSource], top_k: int | None = None, batch_size: int = 16) -> list[ScoreResult]:
        """Scored photos best first (failures dropped and logged). With ``top_k`` only O(k) results are kept."""
        heap: list[tuple[float, int, ScoreResult]] = []
        for i, outcome in enumerate(self.iter_scores(sources, batch_size=batch_size)):
            if isinstance(outcome, ScoreError):
                logger.warning("skipped %s: %s", outcome.source, outcome.reason)
                continue
            entry = (outcome.mean, -i, outcome)  # ties keep input order
            if top_k is None or len(heap) < top_k:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)
        return [e[2] for e in sorted(heap, reverse=True)]

    def best_of_burst(self, sources: Sequence[ImageSource]) -> ScoreResult:
        """The best frame of a burst (several shots of one moment).

        Ties within 1% of the score range are broken by the lower std (the frame raters would agree on).

        Raises:
            ValueError: if no frame could be scored; the message lists each frame's error.
        """
        outcomes = self.score_batch(list(sources))
        good = [o for o in outcomes if isinstance(o, ScoreResult)]
        if not good:
            reasons = "; ".join(f"{o.source}: {o.reason}" for o in outcomes if isinstance(o, ScoreError))
            raise ValueError(f"no frame of the burst could be scored ({reasons or 'empty burst'})")
        lo, hi = self.manifest.output.score_range
        tol = 0.01 * (hi - lo)
        top = max(o.mean for o in good)
        close = [o for o in good if top - o.mean <= tol]
        return min(close, key=lambda o: (o.std, -o.mean))
