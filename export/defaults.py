"""Where the embedded default model lives.

``cskd-export`` with no ``--checkpoint`` exports the default model: a checkpoint shipped as package data of
``cskd_export`` (``export/default_model/cskd-mv2-default.pt``), produced by ``cskd-train pipeline default_cpu``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_CHECKPOINT_NAME", "default_checkpoint"]

DEFAULT_CHECKPOINT_NAME = "cskd-mv2-default.pt"
_DIR = Path(__file__).resolve().parent / "default_model"


def default_checkpoint() -> Path:
    """Path of the default model's checkpoint bundled with ``cskd_export``.

    Raises:
        FileNotFoundError: if this installation carries no default checkpoint yet; the message says how to
            get one or what to pass instead.
    """
    path = _DIR / DEFAULT_CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the default model checkpoint is not part of this cskd installation yet. Train it with "
            "`cskd-train pipeline default_cpu` (it is written there), or pass your own with --checkpoint CKPT."
        )
    return path
