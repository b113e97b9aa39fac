import json

import jsonschema
import pytest

from cskd_runtime.manifest import (
    Calibration, InputSpec, Manifest, ManifestError, ModelInfo, Quantization, schema_path, validate,
)


def test_roundtrip_is_lossless():
    m = Manifest(
        model=ModelInfo(name="m", version="1.2.3", architecture="mobilenetv2_100"),
        input=InputSpec(layout="NHWC", dtype="int8", quantization=Quantization(0.0187, -14)),
        provenance={"recipe": "x.yaml", "metrics": {"srcc": 0.7}},
        calibration=Calibration("ref", "quantiles", tuple(float(i) / 10 for i in range(101))),
    )
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert again.to_json() == m.to_json()


def test_default_manifest_matches_json_schema():
    schema = json.loads(open(schema_path()).read())
    jsonschema.validate(Manifest().to_dict(), schema)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.pop("input"), "missing section 'input'"),
        (lambda d: d["input"].update(layout="CHW"), "input.layout must be one of"),
        (lambda d: d["input"].update(std=[0.2, 0, 0.2]), "input.std must not contain 0"),
        (lambda d: d["input"].update(dtype="int8"), "input.quantization (scale, zero_point) is required"),
        (lambda d: d["input"].update(resize_height=100), "at least the input (crop) size"),
        (lambda d: d["output"].update(bins=[3, 2, 1]), "strictly increasing"),
        (lambda d: d.update(schema_version=99), "newer than this runtime"),
        (lambda d: d["model"].update(name=""), "model.name is missing or empty"),
        (lambda d: d["input"].update(antialias=False), "antialias must be true"),
    ],
)
def test_invalid_manifests_are_refused_with_the_reason(mutate, expected):
    d = Manifest().to_dict()
    mutate(d)
    with pytest.raises(ManifestError) as err:
        Manifest.from_dict(d, source="model.onnx")
    assert expected in str(err.value)
    assert "model.onnx" in str(err.value)


def test_all_problems_reported_at_once():
    d = Manifest().to_dict()
    d["input"]["layout"] = "bad"
    d["output"]["bins"] = [1]
    assert len(validate(d)) == 2


def test_schema_agrees_with_validator_on_enum_errors():
    schema = json.loads(open(schema_path()).read())
    d = Manifest().to_dict()
    d["input"]["interpolation"] = "cubic"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, schema)
    assert validate(d)


def test_not_json():
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json("{oops")


def test_percentile_interpolates_and_clamps():
    cal = Calibration("r", "m", tuple(float(i) for i in range(101)))
    assert cal.percentile(-5) == 0.0
    assert cal.percentile(1000) == 100.0
    assert cal.percentile(42.5) == pytest.approx(42.5)


def test_target_mapping_is_quantile_matching():
    cal = Calibration("r", "m", tuple(float(i) for i in range(101)), "AVA", tuple(3 + 4 * i / 100 for i in range(101)))
    assert cal.to_target(50.0) == pytest.approx(5.0)
    assert cal.to_target(-1) == pytest.approx(3.0)
    assert Manifest.from_json(Manifest(calibration=cal).to_json()).calibration == cal
    assert Calibration("r", "m", cal.quantiles).to_target(3.0) is None


def test_check_against_tensor():
    m = Manifest()
    m.check_against_tensor([None, 3, 224, 224], "float32")
    with pytest.raises(ManifestError, match="does not match manifest NCHW"):
        m.check_against_tensor([1, 224, 224, 3], "float32")
    with pytest.raises(ManifestError, match="dtype int8"):
        m.check_against_tensor([1, 3, 224, 224], "int8")
