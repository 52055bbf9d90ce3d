"""Model files are never unpickled; bad files give one-line errors; calibration does what it claims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.calibration import (
    IsotonicCalibrator,
    PlattScaling,
    TemperatureScaling,
    calibrator_from_dict,
    preset_support,
    threshold_presets,
)
from detectors.modelfile import load_model, read_state_dict, save_model
from detectors.registry import build_detector
from forensics_core.errors import ModelFileError


def _write_marker(path: str) -> None:
    Path(path).write_text("pwned")


class Payload:
    """Unpickling this object would call ``_write_marker`` (the classic pickle code-execution attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (str(self.marker),))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    det = build_detector("npr", res=16, widths=(4, 8))
    cal = TemperatureScaling().fit(np.array([-1.0, 1.0, -2.0, 2.0]), np.array([0, 1, 0, 1]))
    return save_model(tmp_path / "m", det, cal, {"balanced": 0.5, "fpr1": 0.8, "fpr01": 0.95})


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_pickle_with_payload_is_refused_and_never_runs(tmp_path, model_dir, suffix):
    marker = tmp_path / "marker.txt"
    evil = model_dir / f"model{suffix}"
    torch.save({"w": torch.zeros(1), "x": Payload(marker)}, evil)
    with pytest.raises(ModelFileError, match="refusing to load a pickle") as e:
        load_model(evil)
    assert "\n" not in str(e.value) and str(evil) in str(e.value)
    # even when the user opts in, weights_only=True refuses the payload's global
    with pytest.raises(ModelFileError, match="not a plain tensor state dict"):
        read_state_dict(evil, allow_pickle=True)
    assert not marker.exists()


def test_allow_pickle_reads_plain_tensor_state_dict(tmp_path, model_dir):
    det = build_detector("npr", res=16, widths=(4, 8))
    torch.save(det.state_dict(), model_dir / "weights.pth")
    m = load_model(model_dir / "weights.pth", allow_pickle=True, device="cpu")
    x = torch.randn(2, 3, 16, 16)
    det.eval()
    with torch.no_grad():
        np.testing.assert_array_equal(det(x).numpy(), m.detector(x).numpy())


def test_bad_model_files_give_one_line_errors(tmp_path, model_dir):
    cases = []
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "model.json").write_text(json.loads(json.dumps('{"format": "x"}')))
    cases.append((tmp_path / "garbage", "not a deepfake-forensics-model card"))
    (tmp_path / "nojson").mkdir()
    cases.append((tmp_path / "nojson", "no model.json"))
    cases.append((tmp_path / "missing", "no such model"))
    trunc = tmp_path / "trunc"
    trunc.mkdir()
    (trunc / "model.json").write_text((model_dir / "model.json").read_text())
    (trunc / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes()[:100])
    cases.append((trunc, "not a readable safetensors"))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    card = json.loads((model_dir / "model.json").read_text())
    card["config"]["widths"] = [4, 16]
    (wrong / "model.json").write_text(json.dumps(card))
    (wrong / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    cases.append((wrong, "shape mismatch"))
    badname = tmp_path / "badname"
    badname.mkdir()
    card["detector"], card["config"] = "nope", {}
    (badname / "model.json").write_text(json.dumps(card))
    (badname / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    cases.append((badname, "unknown detector 'nope'"))
    for path, msg in cases:
        with pytest.raises(ModelFileError, match=msg) as e:
            load_model(path, device="cpu")
        assert "\n" not in str(e.value)


def test_fp16_model_roundtrip(tmp_path):
    det = build_detector("npr", res=16, widths=(4, 8)).eval()
    save_model(
        tmp_path / "h",
        det,
        TemperatureScaling(1.0).fit(np.array([-1.0, 1.0]), np.array([0, 1])),
        {"balanced": 0.5},
        fp16=True,
    )
    m = load_model(tmp_path / "h", device="cpu")
    assert m.card["dtype"] == "float16"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(det(x), m.detector(x), atol=1e-2)


def _miscalibrated(rng, n=4000):
    z_true = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z_true))).astype(int)
    return 4.0 * z_true, y  # an over-confident detector: logits 4x too large


@pytest.mark.parametrize("cls", [TemperatureScaling, PlattScaling, IsotonicCalibrator])
def test_calibration_lowers_ece(cls, rng):
    from benchmarks.metrics import ece

    z, y = _miscalibrated(rng)
    z_fit, y_fit, z_test, y_test = z[:2000], y[:2000], z[2000:], y[2000:]
    before = ece(y_test, 1 / (1 + np.exp(-z_test)))
    cal = cls().fit(z_fit, y_fit)
    after = ece(y_test, cal.predict_proba(z_test))
    assert after < before / 2 and after < 0.05
    again = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(again.predict_proba(z_test), cal.predict_proba(z_test))
    if cls is TemperatureScaling:
        assert cal.temperature_ == pytest.approx(4.0, rel=0.25)


def test_every_registered_calibrator_round_trips_through_its_registration(rng):
    """A calibrator is its class plus ``@register_calibrator``: its ``kind`` is the registered name, and
    ``calibrator_from_dict`` / ``fit_calibrator`` reach it (and its ``from_dict``) through the registry."""
    from detectors.calibration import CALIBRATORS, calibrator_names, fit_calibrator

    assert calibrator_names() == ["temperature", "platt", "isotonic", "none"]
    z, y = _miscalibrated(rng)
    for e in CALIBRATORS.entries():
        assert e.obj.kind == e.name
        cal = fit_calibrator(e.name, z, y)
        d = json.loads(json.dumps(cal.to_dict()))
        assert d["kind"] == e.name
        again = calibrator_from_dict(d)
        assert type(again) is e.obj
        np.testing.assert_allclose(again.predict_proba(z), cal.predict_proba(z))
        if set(d) > {"kind"}:  # a fitted parameter missing: one line naming the calibration
            with pytest.raises(ModelFileError, match=f"calibration '{e.name}' is malformed"):
                calibrator_from_dict({"kind": e.name})
    with pytest.raises(ModelFileError, match="unknown calibrator"):
        calibrator_from_dict({"kind": "no-such-calibrator"})
    assert type(calibrator_from_dict(None)).kind == "none"


def test_threshold_presets(rng):
    p = np.r_[rng.random(1000) * 0.6, 0.4 + rng.random(1000) * 0.6]
    y = np.r_[np.zeros(1000), np.ones(1000)].astype(int)
    t = threshold_presets(p, y)
    assert (p[y == 0] >= t["fpr1"]).mean() <= 0.01
    assert (p[y == 0] >= t["fpr01"]).mean() <= 0.001
    assert t["fpr01"] >= t["fpr1"] and 0.3 < t["balanced"] < 0.7


def test_preset_support_flags_presets_the_reals_cannot_estimate(tmp_path):
    """fpr01 on 468 reals rests on the single highest real score: it is stored but marked not estimable."""
    s = preset_support(468)
    assert s["fpr1"]["estimable"] is False and s["fpr01"]["estimable"] is False
    assert s["fpr01"]["reals_above"] == pytest.approx(0.5, abs=0.05)
    s = preset_support(1200)
    assert s["fpr1"]["estimable"] is True and s["fpr01"]["estimable"] is False and s["fpr1"]["n_real"] == 1200
    assert preset_support(10_000)["fpr01"]["estimable"] is True
    det = build_detector("npr", res=32, widths=(8, 16, 32))
    out = save_model(tmp_path / "m", det, TemperatureScaling().fit(np.r_[-1.0, 1.0], np.r_[0, 1]), {"balanced": 0.5},
                     threshold_support=s)
    assert json.loads((out / "model.json").read_text())["threshold_support"]["fpr1"]["estimable"] is True


def test_scan_warns_when_a_preset_cannot_be_estimated(caplog):
    from forensics.scanning.results import warn_unsupported_preset

    card = {"name": "m", "threshold_support": preset_support(1200)}
    with caplog.at_level("WARNING"):
        assert warn_unsupported_preset("fpr01", card) is True
        assert warn_unsupported_preset("fpr1", card) is False
        assert warn_unsupported_preset("balanced", card) is False
        assert warn_unsupported_preset("fpr01", {}) is False  # older model files: nothing to say
    assert len(caplog.records) == 1 and "fpr01" in caplog.text and "1200 validation reals" in caplog.text


def test_card_statements_from_model_json_keys_or_the_model_card_markdown(tmp_path):
    """Intended use, out-of-scope uses and measured failure modes: ``model.json`` keys win; the same-named
    ``MODEL_CARD.md`` sections fill in the rest (bullets become lines, markdown dropped); absent ones stay absent."""
    from detectors.modelfile import card_statements

    (tmp_path / "MODEL_CARD.md").write_text(
        "# Model card: m\n\n## Intended use\n\nTriage of **face** images:\nan analyst's first look.\n\n"
        "## Out of scope\n\n- from the markdown (overridden by model.json)\n\n"
        "## Known failure modes (measured)\n\n- `halved` images are the weakest\n- see [transfer](results.md)\n"
        "  continued on the next line\n\n| table | row |\n|---|---|\n\n### Subsection\n\nnot part of it\n\n"
        "## Licence\n\nApache-2.0\n",
        encoding="utf-8",
    )
    card = {"out_of_scope": ["Sole grounds for a decision about a person.", "  "], "intended_use": None}
    got = card_statements(card, tmp_path)
    assert got == {
        "intended_use": ["Triage of face images: an analyst's first look."],
        "out_of_scope": ["Sole grounds for a decision about a person."],
        "failure_modes": ["halved images are the weakest", "see transfer continued on the next line"],
    }
    assert card_statements({"failure_modes": "one line"}) == {"failure_modes": ["one line"]}
    assert card_statements({}, tmp_path / "absent") == {}
