"""Recipes carry the paper's defaults; overrides are typed; mistakes are named."""

from __future__ import annotations

import pytest

from cskd_train.config import RECIPES_DIR, ConfigError, list_recipes, load_config


def test_bundled_recipes_carry_the_paper_defaults():
    names = set(list_recipes())
    assert {"cfa_mv2", "cfa_swinb", "teacher_swinb", "skd_mv2", "nima_mv2", "kd_mv2"} <= names
    for name in names:
        if "pipeline:" in (RECIPES_DIR / f"{name}.yaml").read_text():
            continue  # multi-stage pipeline recipes (cskd-train pipeline) are not stage configs
        cfg = load_config(name)
        assert cfg.optim.lr == 1e-4 and cfg.optim.epochs == 16 and cfg.optim.gamma == 0.1, name
        assert cfg.data.image_size == 224 and cfg.data.resize == 256 and cfg.data.hflip, name
        swin = "swin" in cfg.model.backbone
        assert cfg.optim.milestones == ([2] if swin else [5]), name
    skd = load_config("skd_mv2")
    assert (skd.skd.beta, skd.skd.mu, skd.skd.r, skd.skd.labeled_only) == (15.0, 15, 2.0, False)
    assert load_config("kd_mv2").skd.labeled_only
    cfa = load_config("cfa_mv2").cfa.encoder
    assert (cfa.kind, cfa.name, cfa.pretrained) == ("open_clip", "ViT-L-14", "openai")


def test_overrides_are_typed():
    cfg = load_config("skd_mv2", ["optim.lr=3e-4", "optim.milestones=7", "skd.mu=4", "run.resume=true",
                                  "data.labeled={format: csv, path: x.csv}"])  # fmt: skip
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)  # YAML 1.1 reads "3e-4" as a string
    assert cfg.optim.milestones == [7] and cfg.skd.mu == 4 and cfg.run.resume is True
    assert cfg.data.labeled == {"format": "csv", "path": "x.csv"}
    cfg = load_config("cfa_mv2", ["data.unlabeled.sources.1.path=/data/oi", "data.unlabeled.sources.1.weight=2"])
    assert cfg.data.unlabeled["sources"][1] == {"format": "folder", "path": "/data/oi", "weight": 2}
    assert cfg.data.unlabeled["sources"][0]["path"] == "data/imagenet/train"
    with pytest.raises(ConfigError, match="is a list of 2; '5' is not an index"):
        load_config("cfa_mv2", ["data.unlabeled.sources.5.path=x"])


def test_mistakes_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'lrr'; did you mean 'lr'"):
        load_config("skd_mv2", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="optim.epochs: expected an integer"):
        load_config(None, ["optim.epochs=2.5"], stage="nima")
    with pytest.raises(ConfigError, match="did you mean 'skd_mv2'"):
        load_config("skd_mv3")
    with pytest.raises(ConfigError, match="recipe is for stage 'skd', not 'cfa'"):
        load_config("skd_mv2", stage="cfa")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2]\n")
    with pytest.raises(ConfigError, match=f"{bad}.*optim: expected a mapping"):
        load_config(bad)


def test_own_recipe_paths_resolve_against_its_folder(tmp_path):
    r = tmp_path / "exp" / "mine.yaml"
    r.parent.mkdir()
    r.write_text("stage: teacher\nrun: {out: out/teacher}\n")
    cfg = load_config(r)
    assert cfg.out_dir() == tmp_path / "exp" / "out" / "teacher"
    assert cfg.recipe == "mine"
