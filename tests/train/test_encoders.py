"""Frozen teacher encoders (open_clip, timm, ONNX) and the teacher-output cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cskd_train import distributed as D
from cskd_train.config import EncoderSection, load_config
from cskd_train.encoders import EmbeddingCache, ONNXEncoder, build_encoder, compute_outputs
from cskd_train.model import load_checkpoint
from tests.train.synth import stage_overrides


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """An open_clip ``local-dir:`` folder with a tiny ViT config and no weights: random initialisation."""
    d = tmp_path_factory.mktemp("tiny-clip")
    cfg = {
        "model_cfg": {
            "embed_dim": 24,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
            "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }  # fmt: skip
    (d / "open_clip_config.json").write_text(json.dumps(cfg))
    return d


def test_open_clip_encoder_is_frozen_and_takes_clip_preprocessing(tiny_clip_dir):
    sec = EncoderSection(kind="open_clip", name=f"local-dir:{tiny_clip_dir}", pretrained=None)
    enc = build_encoder(sec, seed=3)
    assert enc.dim == 24
    assert enc.id == f"open_clip:local-dir:{tiny_clip_dir}:random:3"
    s = enc.spec
    assert (s.height, s.resize_height, s.resize_mode, s.interpolation) == (32, 32, "shorter_side", "bicubic")
    assert s.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert all(not p.requires_grad for p in enc.module.parameters())
    x = torch.randn(3, 3, 32, 32)
    enc.module.train()  # even if a caller flips it to train mode, encode runs in eval mode
    y1, y2 = enc.encode(x), enc.encode(x)
    assert not enc.module.training and torch.equal(y1, y2) and y1.shape == (3, 24)
    # A random init is a function of the seed only, so every DDP rank builds the same teacher.
    assert torch.equal(build_encoder(sec, seed=3).encode(x), y1)
    assert not torch.equal(build_encoder(sec, seed=4).encode(x), y1)


@pytest.mark.parametrize("view", ["eval", "same"])
def test_cfa_runs_with_an_open_clip_teacher(tiny_clip_dir, synth_root, view):
    over = stage_overrides("cfa", f"clip_{view}") + [
        "cfa.encoder.kind=open_clip", f"cfa.encoder.name=local-dir:{tiny_clip_dir}", "cfa.encoder.pretrained=none",
        "cfa.encoder.size=null", "cfa.encoder.resize=null", f"cfa.encoder.view={view}", "optim.epochs=2",
        "optim.steps_per_epoch=3",
    ]  # fmt: skip
    from cskd_train.cfa import run_cfa

    path = run_cfa(load_config(None, over, stage="cfa", base_dir=synth_root))
    ck = load_checkpoint(path)
    losses = [h["loss"] for h in ck["history"]]
    assert len(losses) == 2 and all(0 < v < 2 for v in losses)
    assert losses[1] < losses[0]
    assert ck["extra_modules"]["projector.2.weight"].shape[0] == 24  # projector ends at the CLIP width
    prov = json.loads(ck["manifest"])["provenance"]["cfa"]
    assert prov["encoder"].startswith("open_clip:local-dir:") and prov["view"] == view


def test_paper_default_goes_through_open_clip_pretrained_loader(tiny_clip_dir, monkeypatch):
    """The default (ViT-L-14 / openai) asks open_clip's own loader for the pretrained weights (unreachable here,
    so the loader is stood in for by the tiny model) and keeps only the image tower."""
    import open_clip

    real = open_clip.create_model
    seen = []

    def fake(name, pretrained=None, **kw):
        seen.append((name, pretrained))
        return real(f"local-dir:{tiny_clip_dir}")

    monkeypatch.setattr(open_clip, "create_model", fake)
    enc = build_encoder(EncoderSection())
    assert seen == [("ViT-L-14", "openai")]
    assert enc.id == "open_clip:ViT-L-14:openai" and enc.dim == 24
    assert type(enc.module).__name__ == "VisionTransformer" and not hasattr(enc.module, "token_embedding")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A timm encoder exported to ONNX with a CLS-style output and a token output."""
    import timm

    torch.manual_seed(0)
    body = timm.create_model("test_efficientnet", num_classes=0).eval()

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x):
            f = self.body.forward_features(x)  # N, C, H, W
            tokens = torch.cat([f.mean((2, 3))[:, None], f.flatten(2).transpose(1, 2)], dim=1)
            return tokens[:, 0], tokens

    path = tmp_path_factory.mktemp("onnx") / "enc.onnx"
    torch.onnx.export(Enc().eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["input_image"], output_names=["cls", "tokens"],
                      dynamic_axes={"input_image": {0: "b"}, "cls": {0: "b"}, "tokens": {0: "b"}})  # fmt: skip
    return path, body


def test_onnx_encoder_matches_torch_and_names_are_configurable(tiny_onnx):
    path, body = tiny_onnx
    x = torch.randn(4, 3, 32, 32)
    ref = body.forward_features(x).mean((2, 3))
    enc = ONNXEncoder(path, input_name="input_image", output_name="cls")
    assert enc.dim == ref.shape[1] and enc.spec.height == 32  # size read from the static input shape
    assert torch.allclose(enc.encode(x), ref, atol=1e-4)
    tok = ONNXEncoder(path, output_name="tokens")  # (N, L, D) -> its first (CLS) token
    assert torch.allclose(tok.encode(x), ref, atol=1e-4)
    with pytest.raises(ValueError, match="no output 'nope'.*cls, tokens"):
        ONNXEncoder(path, output_name="nope")


def test_teacher_outputs_are_cached_by_encoder_image_and_view(tiny_onnx, synth_root, tmp_path, monkeypatch):
    path, _ = tiny_onnx
    enc = ONNXEncoder(path, output_name="cls")
    import shutil

    paths = []
    for src in sorted((synth_root / "unl").glob("*.png"))[:10]:  # copies: this test touches a file's mtime
        shutil.copy(src, tmp_path / src.name)
        paths.append(str(tmp_path / src.name))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths.append(str(bad))
    first = compute_outputs(enc, paths, D.DistInfo(), batch_size=4, cache_root=tmp_path / "cache", progress=False)
    assert torch.isnan(first[-1]).all() and not torch.isnan(first[:-1]).any()  # undecodable: NaN row, no crash

    calls = []
    monkeypatch.setattr(ONNXEncoder, "encode", lambda self, x: calls.append(len(x)) or torch.zeros(len(x), self.dim))
    again = compute_outputs(enc, paths, D.DistInfo(), batch_size=4, cache_root=tmp_path / "cache", progress=False)
    assert calls == []  # only the broken image is retried, and it fails to decode before reaching the encoder
    assert torch.equal(again[:-1], first[:-1])  # cold and warm cache give the same (float16-rounded) values
    # Another view of the same images is another cache entry: the encoder runs again.
    enc.spec = enc.spec.__class__(**{**enc.spec.to_dict(), "interpolation": "bicubic", "quantization": None,
                                     "mean": enc.spec.mean, "std": enc.spec.std, "background": enc.spec.background})  # fmt: skip
    compute_outputs(enc, paths[:3], D.DistInfo(), batch_size=4, cache_root=tmp_path / "cache", progress=False)
    assert sum(calls) == 3
    # A changed image file invalidates its entry (the key holds size and mtime).
    k1 = EmbeddingCache.key(paths[0])
    import os

    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert EmbeddingCache.key(paths[0]) != k1


@pytest.mark.network
def test_dinov2_onnx_encoder_from_offline_assets(real_photos):
    from cskd_train import offline_init

    onnx_path = offline_init.dinov2_small_encoder_onnx(fetch=True)
    sec = EncoderSection(kind="onnx", name=str(onnx_path), input_name="input_image", output_name="cls",
                         mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], size=224)  # fmt: skip
    enc = build_encoder(sec)
    assert enc.dim == 384
    out = compute_outputs(enc, [str(p) for p in real_photos[:2]], D.DistInfo(), progress=False)
    assert out.shape == (2, 384) and torch.isfinite(out).all()
    assert float(np.linalg.norm(out[0] - out[1])) > 0
