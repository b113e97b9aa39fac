import numpy as np
import pytest

from cskd_train.data import degrade
from tests.conftest import photo_like


@pytest.fixture(scope="module")
def base():
    return degrade.to_work_size(photo_like(1024, 768, seed=4))


def test_work_size_keeps_aspect(base):
    assert max(base.size) == degrade.WORK_SIDE
    assert base.size == (512, 384)


@pytest.mark.parametrize("kind", degrade.TYPES)
def test_each_degradation_is_deterministic_and_grows_with_severity(base, kind):
    ref = np.asarray(base, np.float32)
    dist = []
    for level in degrade.LEVELS:
        a = np.asarray(degrade.apply(base, [degrade.Degradation(kind, level)], seed=3), np.float32)
        b = np.asarray(degrade.apply(base, [degrade.Degradation(kind, level)], seed=3), np.float32)
        assert np.array_equal(a, b)
        assert a.shape == ref.shape
        dist.append(np.abs(a - ref).mean())
    assert dist[0] > 0
    assert dist[0] < dist[1] < dist[2], dist


def test_labels_follow_severity_order():
    d = degrade.Degradation
    means = [degrade.target_mean([d("blur", s)]) for s in (0.0, *degrade.LEVELS)]
    assert means == sorted(means, reverse=True)
    assert means[0] == degrade.TOP_MEAN and means[-1] == pytest.approx(degrade.TOP_MEAN - degrade.SPAN)
    # Two defects are worse than either alone.
    assert degrade.target_mean([d("blur", 0.5), d("noise", 0.5)]) < degrade.target_mean([d("blur", 0.5)])
    p = degrade.target_distribution(5.5)
    assert p.sum() == pytest.approx(1.0)
    assert float(p @ np.arange(1, 11)) == pytest.approx(5.5, abs=0.05)


def test_unknown_kind_and_bad_severity_are_refused(base):
    with pytest.raises(ValueError, match="unknown degradation 'smear'"):
        degrade.apply(base, [degrade.Degradation("smear", 0.5)])
    with pytest.raises(ValueError, match="severity"):
        degrade.apply(base, [degrade.Degradation("blur", 1.5)])


def test_random_degradations_cover_types():
    rng = np.random.default_rng(0)
    seen = {d.kind for _ in range(200) for d in degrade.random_degradations(rng)}
    assert seen == set(degrade.TYPES)
