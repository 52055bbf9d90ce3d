"""Every registered generator family (GAN, editors, super-resolution, diffusion): builds, trains 2 steps at 16 px,
samples the right shapes and round-trips its checkpoint. Parametrised over the registry, so new families are
covered the moment they register."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from forensics_core.errors import UsageError
from generators.base import ATTRIBUTES, INPUT_KINDS, Batch, GeneratorFamily
from generators.registry import GENERATORS
from generators.train import build_family, load_checkpoint, resolve_config, save_checkpoint

RES = 16
N = 4


def _tiny(name: str) -> GeneratorFamily:
    cls = GENERATORS.get(name).obj
    preset = "tiny" if "tiny" in cls.presets else ""
    overrides = {"batch": N}
    cfg = resolve_config(name, RES, preset, overrides)
    torch.manual_seed(0)
    return build_family(name, cfg, "cpu")


def _batch() -> Batch:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(N, 3, RES, RES, generator=g) * 2 - 1
    cond = torch.tensor([[i % len(v) for v in ATTRIBUTES.values()] for i in range(N)])
    return Batch(image=images, cond=cond)


def _sample(fam: GeneratorFamily, batch: Batch, seed: int = 3):
    torch.manual_seed(seed)  # families may also draw from the global RNG
    kwargs: dict = {"steps": 2, "resample": 1}  # 2 DDIM steps for diffusion families; GANs ignore them
    if fam.kind in INPUT_KINDS:
        kwargs["inputs"] = batch.image
    return fam.sample(N, torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("name", GENERATORS.names())
def test_family_trains_samples_and_roundtrips(name: str, tmp_path) -> None:
    entry = GENERATORS.get(name)
    assert entry.meta.get("family") and entry.meta.get("upsampler"), "every family needs family + upsampler tags"
    fam = _tiny(name)
    assert fam.modules() and fam.optimizers()
    batch = _batch()
    for step in range(2):
        losses = fam.train_step(batch, step)
        assert losses and all(torch.isfinite(torch.tensor(float(v))) for v in losses.values()), losses
    out = _sample(fam, batch)
    assert out.images.shape == (N, 3, RES, RES)
    assert out.images.min() >= -1 and out.images.max() <= 1
    if out.masks is not None:
        assert out.masks.shape == (N, 1, RES, RES)

    ck = save_checkpoint(tmp_path, fam, 2, {"epoch": 0, "pos": 0}, {})
    fresh = _tiny(name)
    with torch.no_grad():  # perturb so the test proves loading, not identical initialisation
        for mod in fresh.modules().values():
            for p in mod.parameters():
                p.add_(0.5)
    load_checkpoint(fresh, ck)
    for mname, mod in fam.modules().items():
        other = fresh.modules()[mname].state_dict()
        for k, v in mod.state_dict().items():
            assert torch.equal(v, other[k]), f"{mname}.{k} differs after checkpoint round-trip"
    again = _sample(fresh, batch)
    ref = _sample(fam, batch)
    assert torch.allclose(again.images, ref.images, atol=1e-6)
    d = fam.discriminator()
    assert d is None or isinstance(d, torch.nn.Module)


def test_stylegan2_modconv_equals_per_sample_modulated_weights() -> None:
    """The non-fused modulated conv (scale inputs, shared conv, scale outputs) is the paper's per-sample weight."""
    import torch.nn.functional as F

    from generators.families.stylegan2 import ModConv

    torch.manual_seed(0)
    m = ModConv(8, 6, 3, 16, up=True)
    x, w = torch.randn(4, 8, 5, 5), torch.randn(4, 16)
    s = m.affine(w).view(4, 1, 8, 1, 1)
    weight = m.weight * m.scale * s  # (n, cout, cin, k, k): one modulated weight per sample
    weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
    xu = m.up(x)
    ref = torch.stack([F.conv2d(xu[i : i + 1], weight[i], padding=1)[0] for i in range(4)])
    assert ref.shape == (4, 6, 10, 10)
    torch.testing.assert_close(m(x, w), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("resgan", {"d_norm": "none"}),
        ("pixelshuffle", {"d_arch": "strided", "loss": "nonsat"}),
        ("cgan", {"d_arch": "resnet", "d_norm": "none", "loss": "hinge"}),
    ],
)
def test_discriminator_options_train(name: str, overrides: dict) -> None:
    """The non-default D choices build and train (with R1, as ``d_norm=none`` is meant to be used)."""
    cfg = resolve_config(name, RES, "", {"batch": N, "ch": 4, "r1_gamma": 1.0, "r1_every": 1, **overrides})
    torch.manual_seed(0)
    fam = build_family(name, cfg, "cpu")
    losses = fam.train_step(_batch(), 0)
    assert losses["r1"] > 0 and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert not any("parametrizations" in n for n, _ in fam.D.named_parameters())  # no spectral norm left
    for key, needle in (("d_norm", "unknown d_norm 'batch'"), ("d_arch", "unknown d_arch 'batch'")):
        with pytest.raises(UsageError, match=needle):
            build_family(name, resolve_config(name, RES, "", {"ch": 4, **overrides, key: "batch"}), "cpu")


def test_cgan_condition_tables_get_their_own_learning_rate(tmp_path) -> None:
    """``cond_lr_mul`` puts G's conditional-BN tables in a second Adam group, and the checkpoint keeps both."""
    cfg = resolve_config("cgan", RES, "", {"batch": N, "ch": 4, "cond_lr_mul": 10.0})
    torch.manual_seed(0)
    fam = build_family("cgan", cfg, "cpu")
    groups = fam.opt_G.param_groups
    assert [g["lr"] for g in groups] == [cfg.lr, cfg.lr * 10]
    table_ids = {id(p) for n, p in fam.G.named_parameters() if ".tables." in n}
    assert {id(p) for p in groups[1]["params"]} == table_ids and table_ids
    fam.train_step(_batch(), 0)
    ck = save_checkpoint(tmp_path, fam, 1, {"epoch": 0, "pos": 0}, {})
    fresh = build_family("cgan", cfg, "cpu")
    load_checkpoint(fresh, ck)
    assert [g["lr"] for g in fresh.opt_G.param_groups] == [cfg.lr, cfg.lr * 10]
    p = groups[1]["params"][0]
    q = fresh.opt_G.param_groups[1]["params"][0]
    assert torch.equal(fam.opt_G.state[p]["exp_avg"], fresh.opt_G.state[q]["exp_avg"])


#: loss_d / loss_g at the third of three seeded 16 px steps (R1 every step), recorded before the adversarial families
#: shared one update step (``GanState.generator_update``, ``optimizer_step``, ``frozen``): the shared step must keep
#: each family's training math exactly (bitwise on one machine; the tolerance only absorbs other CPUs' kernels).
PINNED_LOSSES = {
    "cgan": (1.4526946544647217, 1.0197968482971191),
    "cyclegan": (1.0344327688217163, 18.56993293762207),
    "srgan": (1.3734772205352783, 0.5629428625106812),
    "stylegan2": (1.279421329498291, 0.8325236439704895),
}
PINNED_TINY = {"cgan": {"ch": 8, "ch_max": 16}, "cyclegan": {"ngf": 8, "ndf": 8, "n_res": 1},
               "srgan": {"ch": 8, "ndf": 8, "n_blocks": 1}, "stylegan2": {}}


@pytest.mark.parametrize("name", sorted(PINNED_LOSSES))
def test_shared_update_step_keeps_each_familys_training_math(name: str) -> None:
    cls = GENERATORS.get(name).obj
    values = {**cls.presets[str(RES)], **PINNED_TINY[name], "batch": 4}
    if "r1_every" in {f.name for f in dataclasses.fields(cls.Config)}:
        values["r1_every"] = 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        fam = cls(cls.Config(**values))
        cond = torch.tensor([[0, 2, 0], [1, 3, 1], [0, -1, 2], [1, 6, -1]])
        for step in range(3):
            g = torch.Generator().manual_seed(step)
            losses = fam.train_step(Batch(image=torch.rand(4, 3, RES, RES, generator=g) * 2 - 1, cond=cond), step)
    finally:
        torch.set_num_threads(threads)
    assert (losses["loss_d"], losses["loss_g"]) == pytest.approx(PINNED_LOSSES[name], rel=1e-4)
    assert all(p.requires_grad for p in fam.D.parameters())  # D trainable again after the G step
    assert all(p.requires_grad for p in fam.G.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(fam.G.parameters(), fam.G_ema.parameters()))  # EMA lags G
