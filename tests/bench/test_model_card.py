import numpy as np
import pytest

from cskd_bench import model_card
from tests.conftest import photo_like


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("heldout")
    paths = []
    for i in range(3):
        p = d / f"p{i}.png"
        photo_like(640, 480, seed=10 + i).save(p)
        paths.append(p)
    return paths


def sharpness(imgs):
    # Variance of a Laplacian: a classical blur detector, which must rank blurred copies correctly.
    out = []
    for im in imgs:
        g = np.asarray(im.convert("L"), np.float64)
        lap = g[1:-1, 2:] + g[1:-1, :-2] + g[2:, 1:-1] + g[:-2, 1:-1] - 4 * g[1:-1, 1:-1]
        out.append(lap.var())
    return np.asarray(out)


def test_sharpness_scorer_ranks_blur_perfectly(photos):
    r = model_card.evaluate_scorer(sharpness, photos, kinds=["blur"])
    assert r["per_type"]["blur"]["pairwise_accuracy"] == 1.0
    assert r["per_type"]["blur"]["srcc_vs_severity"] == pytest.approx(1.0)
    assert r["pairs"] == 3 * 6


def test_constant_scorer_is_at_chance(photos):
    r = model_card.evaluate_scorer(lambda imgs: np.zeros(len(imgs)), photos, kinds=["blur", "dark"])
    assert r["pairwise_accuracy"] == 0.5
    assert r["srcc_vs_severity"] == 0.0


def test_inverted_scorer_is_always_wrong_and_table_renders(photos):
    rep = model_card.compare({"sharp": sharpness, "inverted": lambda imgs: -sharpness(imgs)}, photos[:1])
    # compare() runs every degradation type; the inverted blur detector must get blur exactly wrong.
    assert rep["results"]["inverted"]["per_type"]["blur"]["pairwise_accuracy"] == 0.0
    text = model_card.markdown(rep)
    assert "| blur |" in text and "sharp acc / srcc" in text
