"""Worker script for the torchrun test: the tiny cfa -> teacher -> skd run, launched once per process."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.synth import run_pipeline  # noqa: E402

if __name__ == "__main__":
    from cskd_train import distributed as D

    run_pipeline(Path(sys.argv[1]), sys.argv[2], threads=1)
    D.teardown()
