"""The pieces :mod:`detectors.base` shares between detectors: the crop spec a model carries and the linear head."""

from __future__ import annotations

import pytest
import torch

from detectors.base import PreprocessSpec
from detectors.registry import build_detector
from forensics_core.errors import UsageError
from forensics_core.faces.crops import CropSpec


def test_preprocess_spec_is_the_models_crop_spec_and_keeps_its_model_json_keys():
    card = {"size": 128, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop": "native", "margin": 0.3}
    spec = PreprocessSpec.from_dict(card)  # a card written before ``edge``
    assert isinstance(spec, CropSpec) and spec.edge == "clamp" and spec.mean == (0.5, 0.5, 0.5)
    assert spec.to_dict() == {**card, "edge": "clamp"}
    assert list(spec.to_dict()) == ["size", "mean", "std", "crop", "margin", "edge"]
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(UsageError, match="preprocess crop must be one of"):
        PreprocessSpec(crop="warp")


@pytest.mark.parametrize("name", ["blend", "npr"])
def test_compact_cnn_detectors_score_their_embedding_with_the_same_tensor_names(name):
    """Model files written before the shared base (``trunk.*``, ``head.*``) load unchanged."""
    det = build_detector(name, res=32, widths=(8, 16)).eval()
    assert [k for k in det.state_dict() if not k.startswith("trunk.")] == ["head.weight", "head.bias"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(det(x), det.head(det.embed(x))[:, 0])
    assert det.cam_layer() is det.trunk.stages[-1]
