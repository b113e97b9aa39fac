"""A run killed mid-epoch and resumed with ``--resume`` ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from cskd_train.config import load_config
from cskd_train.engine import STOP_ENV
from cskd_train.model import load_checkpoint
from cskd_train.skd import run_skd
from tests.train.synth import stage_overrides


def _cfg(pipeline, root, out: str, resume: bool = False):
    over = stage_overrides("skd", out, str(pipeline["cfa"]), str(pipeline["teacher"]))
    over += [
        f"run.out={out}",
        f"skd.cache_dir={pipeline['skd'].parent / 'cache'}",
        "model.dropout=0.3",  # dropout draws from the global RNG: resume must restore it
        "optim.epochs=3",
        "optim.steps_per_epoch=4",
        "optim.accum_steps=2",  # 2 optimizer steps per epoch
        "optim.milestones=[1]",  # the LR drop happens after the kill: the scheduler state must survive
        "run.checkpoint_every_steps=1",
        f"run.resume={str(resume).lower()}",
    ]
    return load_config(None, over, stage="skd", base_dir=root)


def test_killed_then_resumed_equals_uninterrupted(pipeline, synth_root, monkeypatch):
    full = run_skd(_cfg(pipeline, synth_root, "resume/full"))

    # Kill after the 3rd optimizer step: the middle of epoch 2 (a mid-epoch step checkpoint was just written).
    monkeypatch.setenv(STOP_ENV, "3")
    with pytest.raises(SystemExit):
        run_skd(_cfg(pipeline, synth_root, "resume/killed"))
    last = load_checkpoint(synth_root / "resume/killed/last.pt")["train_state"]
    assert (last["epoch"], last["step"], last["global_step"]) == (1, 2, 3)
    assert not (synth_root / "resume/killed/skd.pt").exists()
    at_kill = load_checkpoint(synth_root / "resume/killed/last.pt")["state_dict"]

    monkeypatch.delenv(STOP_ENV)
    resumed = run_skd(_cfg(pipeline, synth_root, "resume/killed", resume=True))

    a = load_checkpoint(full)
    b = load_checkpoint(resumed)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    diff = {k: (a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max().item() for k in a["state_dict"]}
    assert all(v == 0.0 for v in diff.values()), {k: v for k, v in diff.items() if v}
    assert [h["loss"] for h in a["history"]] == pytest.approx([h["loss"] for h in b["history"]], abs=1e-6)
    # Not vacuous: the weights at the kill differ from the final ones.
    assert any(not torch.equal(at_kill[k], a["state_dict"][k]) for k in at_kill if at_kill[k].is_floating_point())
    assert a["history"][-1]["lr"] == pytest.approx(1e-4)  # 1e-3 x 0.1 after epoch 1
