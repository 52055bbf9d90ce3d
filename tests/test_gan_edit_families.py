"""The editing / conditional GAN families (cgan, cyclegan, inpaint, srgan) and the face-region masks.

Tiny 16 px configs, two training steps, generated data: each test checks behaviour (shapes, ranges, exact
compositing, recorded provenance, checkpoint round trips, one-line errors), not just that code ran.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from forensics_core.errors import UsageError
from generators.base import Batch, Samples
from generators.masks import MASK_KINDS, REGIONS, make_masks, mask_boxes, region_boxes, template_landmarks
from generators.registry import GENERATORS

RES = 16
# Smallest widths that still exercise every layer type; presets stay the source of the architecture.
TINY: dict[str, dict] = {
    "cgan": {"ch": 8, "ch_max": 16},
    "cyclegan": {"ngf": 8, "ndf": 8, "n_res": 1},
    "inpaint": {"ch": 8, "ndf": 8},
    "srgan": {"ch": 8, "ndf": 8, "n_blocks": 1},
}
TAGS = {
    "cgan": ("conditional", "bilinear"),
    "cyclegan": ("image2image", "convT-k3s2"),
    "inpaint": ("image2image", "nearest"),
    "srgan": ("superres", "pixelshuffle"),
}
FAMILIES = sorted(TINY)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convs gain nothing from threads, and on a shared 2-core box oversubscription makes them 5-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(name: str, seed: int = 0, **overrides):
    cls = GENERATORS.get(name).obj
    torch.manual_seed(seed)
    cfg = cls.Config(**{**cls.presets[str(RES)], **TINY[name], "batch": 4, **overrides})
    return cls(cfg)


def faces(n: int = 4, res: int = RES, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, res, res, generator=g) * 2 - 1


# gender, age, race per row; -1 = unknown. Two males and two females so cyclegan has both domains.
COND = torch.tensor([[0, 2, 0], [1, 3, 1], [0, -1, 2], [1, 6, -1]])


def sample(fam, n: int = 4, seed: int = 0, **kwargs) -> Samples:
    if fam.kind != "conditional":
        kwargs.setdefault("inputs", faces(n, seed=seed + 1))
    return fam.sample(n, torch.Generator().manual_seed(seed), **kwargs)


@pytest.fixture(scope="module")
def trained() -> dict:
    """Each family after two steps, with the losses it reported (shared by the tests below to keep them fast)."""
    out = {}
    for name in FAMILIES:
        fam = build(name)
        losses = [fam.train_step(Batch(image=faces(seed=s), cond=COND), s) for s in range(2)]
        out[name] = (fam, losses)
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_registered_with_tags(name: str) -> None:
    entry = GENERATORS.get(name)
    kind, upsampler = TAGS[name]
    assert entry.meta["kind"] == kind == entry.obj.kind
    assert entry.meta["upsampler"] == upsampler
    assert entry.meta["family"] == name
    assert {str(r) for r in entry.obj.resolutions} == set(entry.obj.presets)


@pytest.mark.parametrize("name", FAMILIES)
def test_train_two_steps_finite_losses(trained, name: str) -> None:
    fam, losses = trained[name]
    for step in losses:
        assert step and all(math.isfinite(v) for v in step.values())
    assert "loss_g" in losses[-1] and "loss_d" in losses[-1]
    assert fam.discriminator() is fam.modules()["D"]
    assert {"G", "D", "G_ema"} <= set(fam.modules())


@pytest.mark.parametrize("name", FAMILIES)
def test_train_step_changes_weights(name: str) -> None:
    fam = build(name)
    before = {k: v.clone() for k, v in fam.modules()["G"].state_dict().items()}
    fam.train_step(Batch(image=faces(), cond=COND), 0)
    after = fam.modules()["G"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_shapes_and_ranges(trained, name: str) -> None:
    fam, _ = trained[name]
    out = sample(fam, n=3)
    assert out.images.shape == (3, 3, RES, RES)
    assert out.images.min() >= -1 and out.images.max() <= 1
    assert len(out.meta) == 3
    if out.masks is not None:
        assert out.masks.shape == (3, 1, RES, RES)
        assert set(out.masks.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", FAMILIES)
def test_sampling_does_not_change_state(trained, name: str) -> None:
    fam, _ = trained[name]
    before = {k: v.clone() for k, v in fam.modules()["G_ema"].state_dict().items()}
    a, b = sample(fam, seed=3), sample(fam, seed=3)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(v, fam.modules()["G_ema"].state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("name", FAMILIES)
def test_safetensors_round_trip(trained, name: str, tmp_path: Path) -> None:
    fam, _ = trained[name]
    for key, module in fam.modules().items():
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp_path / f"{key}.safetensors"))
    fresh = build(name, seed=123)
    assert not torch.equal(sample(fresh, seed=5).images, sample(fam, seed=5).images)
    for key, module in fresh.modules().items():
        module.load_state_dict(load_file(str(tmp_path / f"{key}.safetensors")))
    assert torch.equal(sample(fresh, seed=5).images, sample(fam, seed=5).images)
    x = faces(2, seed=9)
    with torch.no_grad():
        assert torch.equal(fresh.discriminator()(x), fam.discriminator()(x))


@pytest.mark.parametrize("name", FAMILIES)
def test_wrong_resolution_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="resolution 48") as err:
        build(name, res=48)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["cgan", "cyclegan"])
def test_attribute_families_need_labels(name: str) -> None:
    fam = build(name)
    with pytest.raises(UsageError, match="needs attribute labels") as err:
        fam.train_step(Batch(image=faces(), cond=None), 0)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["cgan", "cyclegan"])
def test_label_free_batches_fail_after_the_limit(name: str) -> None:
    option = "max_unlabelled_batches" if name == "cgan" else "max_skipped_batches"
    fam = build(name, **{option: 2})
    unknown = torch.full((4, 3), -1)
    fam.train_step(Batch(image=faces(), cond=unknown), 0)  # one unlabelled batch in a mixed dataset is fine
    with pytest.raises(UsageError, match="needs attribute labels"):
        fam.train_step(Batch(image=faces(), cond=unknown), 1)


@pytest.mark.parametrize("name", ["cyclegan", "inpaint", "srgan"])
def test_editors_need_inputs(name: str) -> None:
    fam = build(name)
    with pytest.raises(UsageError, match="inputs"):
        fam.sample(2, torch.Generator())
    with pytest.raises(UsageError, match="shape"):
        fam.sample(2, torch.Generator(), inputs=faces(2, res=RES * 2))
    with pytest.raises(UsageError, match=r"\[-1, 1\]"):
        fam.sample(2, torch.Generator(), inputs=faces(2) * 255)


# -- cgan -----------------------------------------------------------------------------------------------------


def test_cgan_condition_is_recorded(trained) -> None:
    fam, _ = trained["cgan"]
    out = sample(fam, n=5, condition={"gender": "female", "age": "20-29"})
    for m in out.meta:
        assert m["condition"]["gender"] == "female" and m["condition"]["age"] == "20-29"
        assert m["condition"]["race"] in ("white", "black", "asian", "indian", "other")
        assert m["condition_fixed"] == ["age", "gender"]
    # The CLI form, and a plain age mapped to its bucket.
    out2 = sample(fam, n=2, condition="gender=male,age=25,race=asian")
    assert out2.meta[0]["condition"] == {"gender": "male", "age": "20-29", "race": "asian"}


def test_cgan_condition_changes_the_image(trained) -> None:
    fam, _ = trained["cgan"]
    a = sample(fam, n=2, seed=1, condition="gender=male,age=0-9,race=white")
    b = sample(fam, n=2, seed=1, condition="gender=female,age=60+,race=black")
    assert not torch.equal(a.images, b.images)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"gender": "robot"}, "unknown gender value 'robot'"),
        ({"height": "tall"}, "unknown condition attribute 'height'"),
        ("gender", "expected attribute=value"),
        ("age=old", "unknown age value"),
    ],
)
def test_cgan_bad_condition(trained, condition, message: str) -> None:
    fam, _ = trained["cgan"]
    with pytest.raises(UsageError, match=message) as err:
        sample(fam, n=1, condition=condition)
    assert "\n" not in str(err.value)


# -- cyclegan -------------------------------------------------------------------------------------------------


def test_cyclegan_directions_and_masks(trained) -> None:
    fam, _ = trained["cyclegan"]
    a2b, b2a = sample(fam, direction="a2b"), sample(fam, direction="b2a")
    assert not torch.equal(a2b.images, b2a.images)
    expected = {"direction": "a2b", "attribute": "gender", "source_domain": "male", "target_domain": "female"}
    assert a2b.meta[0] == expected
    assert b2a.meta[0]["source_domain"] == "female"
    assert torch.equal(a2b.masks, torch.ones_like(a2b.masks))
    with pytest.raises(UsageError, match="unknown direction"):
        sample(fam, direction="sideways")


def test_cyclegan_skips_a_batch_missing_a_domain() -> None:
    fam = build("cyclegan")
    before = {k: v.clone() for k, v in fam.G.state_dict().items()}
    only_male = COND.clone()
    only_male[:, 0] = 0
    out = fam.train_step(Batch(image=faces(), cond=only_male), 0)
    assert out["skipped"] == 1.0 and out["n_b"] == 0.0
    assert all(torch.equal(v, fam.G.state_dict()[k]) for k, v in before.items())


def test_cyclegan_age_domains_and_bad_domains() -> None:
    fam = build("cyclegan", attribute="age", domain_a="0-9,10-19,20-29", domain_b="50-59,60+")
    out = fam.train_step(Batch(image=faces(), cond=COND), 0)  # ages 20-29 (a), 30-39 (neither), ?, 60+ (b)
    assert out["n_a"] == 1.0 and out["n_b"] == 1.0
    with pytest.raises(UsageError, match="unknown age value 'old'"):
        build("cyclegan", attribute="age", domain_a="old", domain_b="60+")
    with pytest.raises(UsageError, match="overlap"):
        build("cyclegan", domain_a="male", domain_b="male")
    with pytest.raises(UsageError, match="unknown attribute"):
        build("cyclegan", attribute="hair")


# -- inpaint --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["eyes", "nose", "mouth", "freeform", "random"])
def test_inpaint_changes_only_the_masked_pixels(trained, region: str) -> None:
    fam, _ = trained["inpaint"]
    x = faces(4, seed=7)
    out = fam.sample(4, torch.Generator().manual_seed(0), inputs=x, region=region)
    m = out.masks.bool().expand_as(x)
    assert set(out.masks.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(out.images[~m], x[~m])  # bit-exact outside the mask
    assert not torch.equal(out.images[m], x[m])  # something was synthesised inside it
    assert all(r["region"] in REGIONS or r["region"] == "freeform" for r in out.meta)
    if region != "random":
        assert {r["region"] for r in out.meta} == {region}


def test_inpaint_explicit_masks_and_bad_region(trained) -> None:
    fam, _ = trained["inpaint"]
    masks = torch.zeros(2, 1, RES, RES)
    masks[:, :, 4:8, 4:8] = 1
    out = sample(fam, n=2, masks=masks)
    assert torch.equal(out.masks, masks) and out.meta[0]["region"] == "given" == out.meta[0]["framing"]
    with pytest.raises(UsageError, match="unknown region 'ears'"):
        sample(fam, n=2, region="ears")
    with pytest.raises(UsageError, match="unknown mask choices"):
        build("inpaint", train_regions="eyes,ears")


# -- srgan ----------------------------------------------------------------------------------------------------


def test_srgan_records_scale_and_accepts_low_res(trained) -> None:
    fam, _ = trained["srgan"]
    hr = faces(2, seed=4)
    out = fam.sample(2, torch.Generator(), inputs=hr)
    assert out.meta[0] == {"scale": 4, "input_res": RES // 4, "downsample": "bicubic"}
    low = fam.degrade(hr)
    assert low.shape == (2, 3, RES // 4, RES // 4)
    given = fam.sample(2, torch.Generator(), inputs=low)
    assert given.meta[0]["downsample"] == "given"
    assert torch.equal(given.images, out.images)  # same degradation either way
    with pytest.raises(UsageError, match="unknown downsample"):
        build("srgan", downsample="lanczos9")


# -- masks ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("res", [16, 64])
def test_masks_are_binary_nonempty_and_seeded(kind: str, res: int) -> None:
    a = make_masks(kind, 5, res, torch.Generator().manual_seed(1), jitter=0.1)
    b = make_masks(kind, 5, res, torch.Generator().manual_seed(1), jitter=0.1)
    assert a.shape == (5, 1, res, res) and a.dtype == torch.float32
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert (a.sum((1, 2, 3)) > 0).all() and (a.mean((1, 2, 3)) < 0.5).all()
    assert torch.equal(a, b)


def test_region_boxes_follow_the_face_layout() -> None:
    def centre_y(name: str) -> float:
        box = region_boxes(name, 1)[0]
        return float(box[1] + box[3]) / 2

    assert centre_y("eyes") < centre_y("nose") < centre_y("mouth")
    lm = template_landmarks()
    eyes = region_boxes("eyes", 1)[0]
    assert eyes[0] < lm[0, 0] < lm[1, 0] < eyes[2]  # both eye centres inside the eyes box
    mouth = region_boxes("mouth", 1)[0]
    assert mouth[0] < lm[3, 0] and lm[4, 0] < mouth[2] and mouth[1] < lm[3, 1] < mouth[3]
    # Per-image landmarks move the box: a face shifted right gets a shifted box.
    shifted = region_boxes("nose", 1, landmarks=(lm + torch.tensor([0.1, 0.0])).unsqueeze(0))[0]
    assert torch.allclose(shifted[[0, 2]], region_boxes("nose", 1)[0][[0, 2]] + 0.1)


def test_utkface_framing_sits_higher_than_aligned() -> None:
    aligned, utk = region_boxes("eyes", 1)[0], region_boxes("eyes", 1, framing="utkface")[0]
    assert utk[1] < aligned[1] - 0.1  # UTKFace chips put the eyes near y = 0.3, aligned crops near 0.47
    m = make_masks("random", 3, 32, torch.Generator().manual_seed(0), framing="utkface", choices=("free-form", "Mouth"))
    assert set(m.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(UsageError, match="unknown face framing 'celeba'"):
        make_masks("eyes", 1, 16, framing="celeba")


def test_inpaint_framing_option_and_meta(trained) -> None:
    fam, _ = trained["inpaint"]
    out = sample(fam, n=2, region="eyes", framing="utkface")
    assert out.meta[0]["framing"] == "utkface"
    assert torch.equal(out.masks, make_masks("eyes", 2, RES, framing="utkface"))
    with pytest.raises(UsageError, match="unknown face framing"):
        build("inpaint", framing="celeba")


def test_mask_boxes_and_errors() -> None:
    m = torch.zeros(2, 1, 8, 8)
    m[0, 0, 2:5, 3:7] = 1
    assert mask_boxes(m).tolist() == [[3.0, 2.0, 7.0, 5.0], [0.0, 0.0, 8.0, 8.0]]  # empty mask -> whole image
    with pytest.raises(UsageError, match="unknown mask region 'ears'"):
        make_masks("ears", 1, 16)
    with pytest.raises(UsageError, match="landmarks must have shape"):
        make_masks("eyes", 2, 16, landmarks=torch.zeros(3, 5, 2))
