"""Score calibration of the default model: AVA's real vote statistics and the reference population."""

from __future__ import annotations

import numpy as np

from cskd_runtime.manifest import Manifest
from cskd_train import default_model


def test_ava_quantiles_come_from_the_real_vote_table():
    q = np.asarray(default_model.ava_mean_quantiles())
    assert q.shape == (101,)
    assert np.all(np.diff(q) >= 0)
    # AVA's mean votes lie on 1..10 and cluster around 5.4 (Murray et al.): the median must be there, not a default.
    assert 1.0 <= q[0] < q[50] < q[100] <= 10.0
    assert 5.2 < q[50] < 5.6


def test_calibration_quantiles_are_the_models_scores_on_the_reference_set(mv2_model, tmp_path):
    model, manifest = mv2_model
    photos = default_model.reference_photos(root=tmp_path / "ref", variants=2)
    assert len(photos) == 2 * 10 and all(p.is_file() for p in photos)
    calib = default_model.score_calibration(model, manifest, photos)
    q = np.asarray(calib.quantiles)
    assert q.shape == (101,) and np.all(np.diff(q) >= 0)
    assert 1.0 <= q[0] < q[100] <= 10.0
    # The median reference photo sits at the 50th percentile and maps onto AVA's median vote.
    assert abs(calib.percentile(float(q[50])) - 50.0) < 1.0
    assert abs(calib.to_target(float(q[50])) - default_model.ava_mean_quantiles()[50]) < 0.05
    # The calibration survives the manifest round trip (it travels inside every artifact).
    back = Manifest.from_json(manifest.replace(calibration=calib).to_json())
    assert back.calibration.quantiles == calib.quantiles
