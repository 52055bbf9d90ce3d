"""Latent-diffusion families: build, train, sample, checkpoint round-trip, schedules, DDIM determinism, errors."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from forensics_core.errors import UsageError
from generators.base import Batch, GeneratorFamily
from generators.diffusion.schedule import BETA_SCHEDULES, NoiseSchedule
from generators.diffusion.unet import TimeResBlock
from generators.metrics import psnr, ssim
from generators.registry import GENERATORS, get_generator
from generators.train import load_module_tensors, module_tensors

FAMILIES = ("ldm-ae", "ae-recon", "ldm", "sdedit", "ldm-inpaint")
EDITORS = ("ldm-ae", "ae-recon", "sdedit", "ldm-inpaint")
RES = 16
torch.set_num_threads(1)


def tiny(name: str, **overrides) -> GeneratorFamily:
    cls = get_generator(name)
    names = {f.name for f in dataclasses.fields(cls.Config)}
    values = {**cls.presets["tiny"], "res": RES, "batch": 4, **overrides}
    if "ae_steps" in names:
        values.setdefault("ae_steps", 1)  # step 0 trains the autoencoder, step 1 the diffusion model
    torch.manual_seed(0)
    return cls(cls.Config(**{k: v for k, v in values.items() if k in names}))


def faces(n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, RES, RES, generator=g) * 2 - 1


COND = torch.tensor([[0, 1, 2], [1, -1, 0], [0, 3, 4], [-1, -1, -1]])


def sample(fam: GeneratorFamily, n: int = 3, seed: int = 0, **kw):
    return fam.sample(n, torch.Generator().manual_seed(seed), inputs=faces(), steps=2, **kw)


@pytest.fixture(scope="module")
def trained() -> dict[str, GeneratorFamily]:
    """Every family after two training steps (shared so the module stays fast)."""
    out = {}
    for name in FAMILIES:
        fam = tiny(name)
        losses = [fam.train_step(Batch(faces(), COND), step) for step in range(2)]
        assert all(torch.isfinite(torch.tensor(list(d.values()))).all() for d in losses)
        out[name] = fam
    return out


def test_registered_with_tags():
    for name in FAMILIES:
        entry = GENERATORS.get(name)
        assert entry.meta["family"] == name and entry.meta["upsampler"] == "nearest"
    assert GENERATORS.get("ae-recon").meta["kind"] == "image2image"
    assert GENERATORS.get("sdedit").meta["kind"] == get_generator("sdedit").kind == "image2image"


@pytest.mark.parametrize("name", FAMILIES)
def test_trains_and_samples_right_shapes(trained, name):
    out = sample(trained[name])
    assert out.images.shape == (3, 3, RES, RES)
    assert out.images.min() >= -1 and out.images.max() <= 1
    assert len(out.meta) == 3
    if name == "ldm-inpaint":
        assert out.masks is not None and out.masks.shape == (3, 1, RES, RES)
        assert set(out.masks.unique().tolist()) <= {0.0, 1.0}
        # pixels outside the mask are the real input's, so the mask is exact localisation ground truth
        keep = out.masks == 0
        assert torch.equal(out.images.masked_select(keep.expand_as(out.images)),
                           faces()[:3].masked_select(keep.expand_as(out.images)))


def test_ldm_phases_train_autoencoder_then_diffusion(trained):
    fam = tiny("ldm", ae_steps=1)
    assert "l1" in fam.train_step(Batch(faces(), COND), 0)
    assert set(fam.train_step(Batch(faces(), COND), 1)) == {"diffusion_loss"}
    assert float(fam.ae.latent_std) > 0  # the latent scale was measured for the diffusion model


@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoint_round_trip(trained, name, tmp_path: Path):
    fam = trained[name]
    save_weights(fam, tmp_path / "m.safetensors")
    fresh = tiny(name)
    load_weights(fresh, tmp_path / "m.safetensors")
    for key, module in fam.modules().items():
        for (k, a), (_, b) in zip(module.state_dict().items(), fresh.modules()[key].state_dict().items()):
            assert torch.equal(a, b), f"{key}.{k}"
    assert torch.equal(sample(fam).images, sample(fresh).images)


def test_ae_run_and_ldm_run_references_load_weights(trained, tmp_path: Path):
    save_weights(trained["ldm-ae"], tmp_path / "ae.safetensors")
    recon = tiny("ae-recon", ae_run=str(tmp_path / "ae.safetensors"))
    assert torch.equal(sample(recon).images, sample(trained["ldm-ae"]).images)
    ldm = tiny("ldm", ae_run=str(tmp_path / "ae.safetensors"))
    assert ldm.ae_trainer is None and not any(p.requires_grad for p in ldm.ae.parameters())
    save_weights(trained["ldm"], tmp_path / "ldm.safetensors")
    edit = tiny("sdedit", ldm_run=str(tmp_path / "ldm.safetensors"))
    before = {k: v.clone() for k, v in edit.unet_ema.state_dict().items()}
    assert edit.train_step(Batch(faces(), COND), 5) == {}  # a wrapped trained ldm is not retrained
    assert all(torch.equal(v, edit.unet_ema.state_dict()[k]) for k, v in before.items())
    key = "conv_in.weight"
    assert torch.equal(edit.unet_ema.state_dict()[key], trained["ldm"].unet_ema.state_dict()[key])
    with pytest.raises(UsageError, match="file not found"):
        tiny("ldm", ae_run=str(tmp_path / "missing.safetensors"))
    with pytest.raises(UsageError, match="has no 'UNet' weights"):
        tiny("sdedit", ldm_run=str(tmp_path / "ae.safetensors"))


def test_decoder_only_training_keeps_the_latents(trained, tmp_path: Path):
    """train_encoder=False: a diffusion model trained on the old latents still fits the fine-tuned autoencoder."""
    save_weights(trained["ldm-ae"], tmp_path / "ae.safetensors")
    fam = tiny("ae-recon", ae_run=str(tmp_path / "ae.safetensors"), train_encoder=False)
    ae = fam.trainer.ae
    enc = {k: v.clone() for k, v in ae.encoder.state_dict().items()}
    dec = {k: v.clone() for k, v in ae.decoder.state_dict().items()}
    std = ae.latent_std.clone()
    for step in range(2):
        fam.train_step(Batch(faces(), COND), step)
    assert all(torch.equal(v, ae.encoder.state_dict()[k]) for k, v in enc.items())
    assert torch.equal(ae.latent_std, std)
    assert any(not torch.equal(v, ae.decoder.state_dict()[k]) for k, v in dec.items())


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_is_deterministic_with_a_seed(trained, eta):
    fam = trained["ldm"]
    a = sample(fam, seed=7, eta=eta).images
    b = sample(fam, seed=7, eta=eta).images
    c = sample(fam, seed=8, eta=eta).images
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_guidance_and_condition(trained):
    fam = copy.deepcopy(trained["ldm"])
    # zero-initialised output convs make a 2-step UNet ignore its condition: randomise them so guidance shows
    with torch.no_grad():
        for m in fam.unet_ema.modules():
            if isinstance(m, TimeResBlock):
                m.c2.weight.normal_(std=0.1)
        fam.unet_ema.out[-1].weight.normal_(std=0.1)
    plain = sample(fam, condition="gender=female", guidance=1.0)
    guided = sample(fam, condition="gender=female", guidance=3.0)
    assert not torch.equal(plain.images, guided.images)
    assert guided.meta[0]["condition"] == {"gender": "female"} and guided.meta[0]["guidance"] == 3.0
    # no condition given: guidance 1 samples p(z) (no attributes recorded); guidance > 1 draws every face's
    # attributes from the seed, records them, and is reproducible
    free = sample(fam, guidance=1.0)
    drawn = sample(fam, guidance=3.0, seed=5)
    assert free.meta[0]["condition"] is None
    assert all(set(m["condition"]) == {"gender", "age", "race"} for m in drawn.meta)
    assert torch.equal(drawn.images, sample(fam, guidance=3.0, seed=5).images)
    with pytest.raises(UsageError, match="unknown condition attribute"):
        sample(fam, condition="hair=red")
    with pytest.raises(UsageError, match="unknown gender"):
        sample(fam, condition="gender=robot")


def test_inpaint_resampling_jumps_and_explicit_masks(trained):
    fam = trained["ldm-inpaint"]
    m = torch.zeros(3, 1, RES, RES)
    m[:, :, 4:12, 4:12] = 1
    out = sample(fam, masks=m, resample=2, region="eyes")
    assert torch.equal(out.masks, m) and out.meta[0]["region"] == "given" and out.meta[0]["resample"] == 2
    eyes = sample(fam, region="eyes")
    assert eyes.masks.sum() > 0 and eyes.meta[0]["region"] == "eyes"


def test_sdedit_records_strength_and_zero_strength_is_reconstruction(trained):
    fam = trained["sdedit"]
    out = sample(fam, strength=0.3)
    assert all(m["strength"] == 0.3 for m in out.meta) and out.meta[0]["t_start"] == round(0.3 * 999)
    zero = sample(fam, strength=0.0)
    assert torch.allclose(zero.images, fam.decode_latent(fam.encode_latent(faces()[:3])))


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("ldm", {"steps": 0}, "steps must be >= 1"),
        ("sdedit", {"strength": 1.5}, r"strength must be in \[0, 1\]"),
        ("sdedit", {"strength": -0.1}, r"strength must be in \[0, 1\]"),
        ("ldm-inpaint", {"masks": torch.ones(3, 1, 8, 8)}, "mask shape"),
        ("ldm-inpaint", {"region": "ears"}, "unknown mask region"),
        ("ldm-inpaint", {"steps": 0}, "steps must be >= 1"),
        ("ldm-inpaint", {"resample": 0}, "resample must be >= 1"),
    ],
)
def test_bad_options_give_one_line_errors(trained, name, kwargs, match):
    fam = trained[name]
    kw = {"steps": 2, **kwargs}
    with pytest.raises(UsageError, match=match) as err:
        fam.sample(3, torch.Generator().manual_seed(0), inputs=faces(), **kw)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", EDITORS)
def test_editors_need_inputs(trained, name):
    with pytest.raises(UsageError, match="inputs"):
        trained[name].sample(2, torch.Generator().manual_seed(0))


def test_feature_loss_prefers_the_project_feature_network(monkeypatch):
    from generators.diffusion import ae_training
    from generators.metrics import FeatNet

    monkeypatch.setattr(ae_training, "_featnet_layers", lambda: ae_training.FeatNetLayers(FeatNet().body))
    fam = tiny("ldm-ae", feat_source="auto")
    assert fam.trainer.feat_source == "featnet"
    before = [p.clone() for p in fam.trainer.featnet.parameters()]
    assert fam.train_step(Batch(faces()), 0)["feat"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, fam.trainer.featnet.parameters()))  # frozen yardstick
    assert tiny("ldm-ae", feat_source="disc").trainer.feat_source == "disc"
    monkeypatch.setattr(ae_training, "_featnet_layers", lambda: None)
    with pytest.raises(UsageError, match="featnet"):
        tiny("ldm-ae", feat_source="featnet")


def test_bad_configs():
    with pytest.raises(UsageError, match="factor"):
        tiny("ldm-ae", factor=2)
    with pytest.raises(UsageError, match="schedule"):
        tiny("ldm", schedule="quadratic")
    with pytest.raises(UsageError, match="prediction"):
        tiny("ldm", prediction="x0")


@pytest.mark.parametrize("schedule", sorted(BETA_SCHEDULES))
def test_schedule_alphas_monotone_in_unit_interval(schedule):
    s = NoiseSchedule(1000, schedule)
    abar = s.alphas_cumprod
    assert (abar > 0).all() and (abar < 1).all()
    assert (abar[1:] < abar[:-1]).all()
    assert abar[0] > 0.99 and abar[-1] < 0.01  # starts almost clean, ends almost pure noise


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_parameterisations_recover_x0_and_noise(prediction):
    s = NoiseSchedule(100, "linear", prediction)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 4, 4, 4, generator=g), torch.randn(4, 4, 4, 4, generator=g)
    t = torch.tensor([0, 10, 50, 99])
    x_t = s.q_sample(x0, t, noise)
    x0_hat, eps_hat = s.split(x_t, t, s.target(x0, noise, t))
    assert torch.allclose(x0_hat, x0, atol=1e-3) and torch.allclose(eps_hat, noise, atol=1e-3)
    # a DDIM step with a perfect prediction lands exactly on the forward process at the earlier step
    x_prev = s.ddim_step(x_t[1:2], x0[1:2], noise[1:2], 10, 5, 0.0, None)
    assert torch.allclose(x_prev, s.q_sample(x0[1:2], torch.tensor([5]), noise[1:2]), atol=1e-4)


def test_x0_clipping_keeps_the_pair_consistent():
    s = NoiseSchedule(1000, "cosine", "eps")
    g = torch.Generator().manual_seed(0)
    x_t, out = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    t = torch.tensor([999, 500])
    x0, eps = s.split(x_t, t, out, clip_x0=3.0)
    assert x0.abs().max() <= 3.0 and s.split(x_t, t, out)[0].abs().max() > 100  # eps error amplified near T
    a = s.abar(t)
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x_t, atol=1e-4)


def test_ddim_timesteps():
    s = NoiseSchedule(1000)
    assert s.ddim_timesteps(4) == [999, 666, 333, 0]
    assert s.ddim_timesteps(50, t_start=10) == list(range(10, -1, -1))
    with pytest.raises(UsageError):
        s.ddim_timesteps(0)


def save_weights(fam, path: Path) -> None:
    save_file(module_tensors(fam), str(path))


def load_weights(fam, path: Path) -> None:
    assert set(load_module_tensors(fam, load_file(str(path)), str(path))) == set(fam.modules())


def test_reconstruction_metrics():
    x = faces()
    assert torch.allclose(ssim(x, x), torch.ones(4))
    assert (psnr(x, x) > 90).all()
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    assert (ssim(noisy, x) < 1).all() and (psnr(noisy, x) < 40).all()


def test_three_autoencoders_differ_in_upsampling_latent_and_depth():
    """ae-recon, ae-convT and ae-shuffle share no decoder: each upsamples the way its registry tag says (the trace
    a held-out test asks about), has its own latent width and depth, declares its own component (its own held-out
    group), and every family that decodes through an autoencoder refuses a decoder contradicting its tag."""
    from generators.diffusion.ae_families import reconstruction_families
    from generators.diffusion.autoencoder import ResBlock
    from generators.layers import make_upsampler

    fams = reconstruction_families()
    assert fams == {"nearest": "ae-recon", "convT-k4s2": "ae-convT", "pixelshuffle": "ae-shuffle"}
    shapes, comps = set(), []
    for ups, name in fams.items():
        fam = tiny(name)
        ups_blocks = [m for m in fam.trainer.ae.decoder.up if not isinstance(m, ResBlock)]
        assert len(ups_blocks) == int(np.log2(fam.cfg.factor)), name
        layout = [type(m) for m in make_upsampler(ups, 4, 4).modules()]  # the registry's layers for this tag
        assert all([type(m) for m in b.modules()] == layout for b in ups_blocks), name
        out = fam.sample(2, torch.Generator().manual_seed(0), inputs=faces())
        assert out.images.shape == (2, 3, RES, RES) and out.meta[0]["decoder_upsample"] == ups
        shapes.add((fam.cfg.factor, fam.cfg.z_channels, fam.cfg.ae_blocks))
        comps.append(GENERATORS.get(name).meta["components"])
    assert len(shapes) == 3 and len({c for cs in comps for c in cs}) == 3  # no shared component
    with pytest.raises(UsageError, match="use ae-convT"):
        tiny("ae-recon", ae_upsample="convT-k4s2")
    with pytest.raises(UsageError, match="ldm decodes with nearest"):
        tiny("ldm", ae_upsample="pixelshuffle")
    with pytest.raises(UsageError, match="ae_upsample must be one of"):
        tiny("ldm-ae", ae_upsample="bicubic")


def test_pixel_shuffle_upsampler_starts_without_a_checkerboard():
    """ICNR init (``make_upsampler("pixelshuffle", ..., icnr=True)``, what the ae-shuffle decoder asks for): the four
    sub-pixel filters start equal, so every 2x2 output block is one value at step 0 and the decoder's periodic trace
    is learned, not an artefact of initialisation. The plain registry entry (the pixelshuffle GAN's) has no such
    property."""
    from generators.diffusion.autoencoder import Decoder
    from generators.layers import make_upsampler

    def blocks_equal(up: torch.nn.Module) -> bool:
        c = up[0].in_channels
        y = up(torch.randn(1, c, 5, 5))
        assert y.shape == (1, c, 10, 10)
        blocks = y.unfold(2, 2, 2).unfold(3, 2, 2)  # (1, C, 5, 5, 2, 2)
        return torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))

    torch.manual_seed(0)
    assert blocks_equal(make_upsampler("pixelshuffle", 4, 4, icnr=True))
    assert not blocks_equal(make_upsampler("pixelshuffle", 4, 4))
    dec = Decoder(3, base=4, factor=4, z_ch=4, blocks=1, upsample="pixelshuffle")
    assert all(blocks_equal(m) for m in dec.up if isinstance(m, torch.nn.Sequential))


@pytest.mark.parametrize("ups", ["nearest", "convT-k4s2", "pixelshuffle"])
def test_decoder_loads_weights_saved_under_the_legacy_upsampler_keys(ups):
    """The shipped autoencoders were saved when each decoder upsampler named its conv ``up.K.conv``: such a state
    dict still loads strictly, into the registry's layers, and decodes exactly as the source decoder does."""
    from generators.diffusion.autoencoder import KLAutoencoder, ResBlock

    torch.manual_seed(0)
    src = KLAutoencoder(base=8, factor=4, z_channels=4, upsample=ups)
    legacy = dict(src.state_dict())
    renamed = 0
    for i, block in enumerate(src.decoder.up):
        if isinstance(block, ResBlock):
            continue
        for name, m in block.named_modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                for p in ("weight", "bias"):
                    key = f"decoder.up.{i}.{name + '.' if name else ''}{p}"
                    legacy[f"decoder.up.{i}.conv.{p}"] = legacy.pop(key)
                    renamed += 1
    assert renamed == 2 * 2  # two upsampler blocks at factor 4, weight and bias each
    dst = KLAutoencoder(base=8, factor=4, z_channels=4, upsample=ups)
    dst.load_state_dict(legacy, strict=True)
    z = torch.randn(1, 4, 4, 4)
    assert torch.equal(dst.decode(z), src.decode(z))
