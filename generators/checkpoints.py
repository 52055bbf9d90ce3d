"""Generator checkpoints and runs: save / load weights, open a trained run, a checkpoint or a shipped reference model.

Split from :mod:`generators.train` so that code which only *uses* a trained generator (samplers, metrics, the
suite, diffusion families that borrow modules, the GAN-discriminator detector) loads it without importing the
trainer: model code never imports a trainer. ``generators.train`` re-exports these names.

Checkpoints are safetensors for every tensor and JSON for the rest. Never pickle.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from forensics_core.errors import ModelFileError, UnknownNameError, UsageError
from forensics_core.runs import optimizer_state_dict, optimizer_to_tensors, save_tensors
from generators.base import GenConfig, GeneratorFamily
from generators.registry import GENERATORS

ASSETS = Path(__file__).resolve().parent / "assets"

__all__ = [
    "ASSETS", "Checkpoint", "build_family", "export_reference", "init_weights", "list_checkpoints",
    "load_checkpoint", "load_module_tensors", "load_run", "module_tensors", "reference_names", "save_checkpoint",
]


def build_family(family_name: str, cfg: GenConfig, device: torch.device | str = "cpu") -> GeneratorFamily:
    return GENERATORS.get(family_name).obj(cfg, device)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: safetensors for every tensor, JSON for the rest. Never pickle.
# ---------------------------------------------------------------------------------------------------------------


def module_tensors(family: GeneratorFamily, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for mname, mod in family.modules().items():
        if names is not None and mname not in names:
            continue
        for k, v in mod.state_dict().items():
            out[f"{mname}.{k}"] = v.detach().cpu().contiguous().clone()
    return out


def load_module_tensors(family: GeneratorFamily, tensors: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load ``<module>.<param>`` tensors into the family's modules; returns the modules loaded."""
    loaded = []
    for mname, mod in family.modules().items():
        sd = {k[len(mname) + 1 :]: v for k, v in tensors.items() if k.startswith(mname + ".")}
        if not sd:
            continue
        target = mod.state_dict()
        sd = {k: v.to(target[k].dtype) if k in target else v for k, v in sd.items()}
        try:
            mod.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            msg = f"{source}: weights for {mname!r} do not fit the configured network ({first})"
            raise ModelFileError(msg) from None
        loaded.append(mname)
    return loaded


@dataclass
class Checkpoint:
    path: Path
    step: int
    sha256: str


def save_checkpoint(
    run_dir: Path, family: GeneratorFamily, step: int, loader_state: dict[str, int], extra: dict[str, Any]
) -> Path:
    from forensics_core.hashing import sha256_file

    ck = run_dir / "checkpoints" / f"step-{step:06d}"
    tmp = ck.with_name(ck.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_tensors(tmp / "modules.safetensors", module_tensors(family), {"format": "pt", "step": str(step)})
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_side: dict[str, Any] = {}
    for name, opt in family.optimizers().items():
        t, s = optimizer_to_tensors(name, opt)
        opt_tensors.update(t)
        opt_side[name] = s
    opt_tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            opt_tensors[f"rng.cuda.{i}"] = st
    save_tensors(tmp / "optim.safetensors", opt_tensors, {"format": "pt"})
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "step": step,
        "loader": loader_state,
        "optimizers": opt_side,
        "rng": {
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": [py_state[0], list(py_state[1]), py_state[2]],
        },
        **extra,
    }
    (tmp / "state.json").write_text(json.dumps(state))
    state["modules_sha256"] = sha256_file(tmp / "modules.safetensors")
    (tmp / "state.json").write_text(json.dumps(state))
    if ck.exists():
        shutil.rmtree(ck)
    os.replace(tmp, ck)
    return ck


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / "checkpoints").glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))


def load_checkpoint(family: GeneratorFamily, ck: Path, *, restore_training: bool = True) -> dict[str, Any]:
    """Load weights (and, for resume, optimisers + RNG states) from a checkpoint dir; returns its state.json."""
    try:
        state = json.loads((ck / "state.json").read_text())
        tensors = load_file(ck / "modules.safetensors")
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{ck}: unreadable checkpoint ({exc})") from None
    for mod in family.modules().values():
        mod.to("cpu")
    load_module_tensors(family, tensors, str(ck))
    for mod in family.modules().values():
        mod.to(family.device)
    if restore_training:
        opt_t = load_file(ck / "optim.safetensors")
        for name, opt in family.optimizers().items():
            opt.load_state_dict(optimizer_state_dict(name, opt_t, state["optimizers"][name]))
        torch.set_rng_state(opt_t["rng.torch"])
        cuda = [opt_t[k] for k in sorted(k for k in opt_t if k.startswith("rng.cuda."))]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
        npst = state["rng"]["numpy"]
        np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), *npst[2:]))
        pyst = state["rng"]["python"]
        random.setstate((pyst[0], tuple(pyst[1]), pyst[2]))
    return state


# ---------------------------------------------------------------------------------------------------------------
# Run directories and loading trained / shipped models
# ---------------------------------------------------------------------------------------------------------------


def reference_names() -> list[str]:
    return sorted(p.parent.name for p in ASSETS.glob("*/model.json")) if ASSETS.is_dir() else []


def _family_from_options(opts: dict[str, Any], device: torch.device | str) -> GeneratorFamily:
    name = opts["family"]
    cls = GENERATORS.get(name).obj
    known = {f.name for f in fields(cls.Config)}
    cfg = cls.Config(**{k: v for k, v in opts["config"].items() if k in known})
    return cls(cfg, device)


def load_run(run_dir_or_name: str | os.PathLike[str], device: str | torch.device = "cpu") -> GeneratorFamily:
    """A trained family with weights loaded: a run dir (latest checkpoint), a checkpoint dir, or a shipped name.

    The returned family carries ``checkpoint`` (:class:`Checkpoint`) and ``generator_name`` for provenance.
    """
    from forensics_core.config import resolve_device
    from forensics_core.hashing import sha256_file

    dev = resolve_device(str(device)) if isinstance(device, str) else device
    p = Path(run_dir_or_name)
    if p.is_dir() and (p / "state.json").is_file() and (p.parent.parent / "options.json").is_file():
        run_dir, ck = p.parent.parent, p
    elif p.is_dir() and (p / "options.json").is_file():
        run_dir, cks = p, list_checkpoints(p)
        if not cks:
            raise ModelFileError(f"{p}: run has no checkpoint yet")
        ck = cks[-1]
    elif (ASSETS / str(run_dir_or_name) / "model.json").is_file():
        return _load_reference(str(run_dir_or_name), dev)
    else:
        refs = reference_names()
        hint = f"shipped reference models: {', '.join(refs)}" if refs else "no reference models are shipped yet"
        if p.exists():
            raise ModelFileError(f"{p}: not a run dir (no options.json) nor a checkpoint dir; {hint}")
        raise UnknownNameError(f"unknown run or reference model '{run_dir_or_name}'; {hint}")
    opts = json.loads((run_dir / "options.json").read_text())
    fam = _family_from_options(opts, dev)
    state = load_checkpoint(fam, ck, restore_training=False)
    fam.checkpoint = Checkpoint(ck, int(state["step"]), sha256_file(ck / "modules.safetensors"))  # type: ignore[attr-defined]
    fam.generator_name = opts["family"]  # type: ignore[attr-defined]
    return fam


def _load_reference(name: str, device: torch.device) -> GeneratorFamily:
    from forensics_core.hashing import sha256_file

    d = ASSETS / name
    card = json.loads((d / "model.json").read_text())
    fam = _family_from_options(card, device)
    wpath = d / "model.safetensors"
    try:
        tensors = load_file(wpath)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{wpath}: unreadable reference weights ({exc})") from None
    for mod in fam.modules().values():
        mod.to("cpu")
    loaded = load_module_tensors(fam, tensors, str(wpath))
    for mname, mod in fam.modules().items():
        if mname not in loaded and f"{mname}_ema" in loaded:  # shipped EMA stands in for the raw weights
            mod.load_state_dict(fam.modules()[f"{mname}_ema"].state_dict())
        mod.to(device)
    fam.checkpoint = Checkpoint(wpath, int(card.get("steps", 0)), sha256_file(wpath))  # type: ignore[attr-defined]
    fam.generator_name = card["family"]  # type: ignore[attr-defined]
    return fam


def init_weights(family: GeneratorFamily, source: str, modules: list[str] | None = None) -> None:
    """Copy the weights of ``source`` (anything :func:`load_run` opens) into ``family``, e.g. to fine-tune a
    shipped generator with other learning rates; ``modules`` (e.g. ``["G", "G_ema"]``) restricts the copy, so a
    discriminator can restart from scratch under a trained generator. A source that does not fit the configured
    network is a one-line error: a silently partial load would train from a network nobody asked for."""
    src = load_run(source, device="cpu")
    if src.name != family.name:
        raise UsageError(f"--init {source}: holds a {src.name} model, not {family.name}")
    names = modules or list(family.modules())
    unknown = sorted(set(names) - set(family.modules()))
    if unknown:
        have = ", ".join(family.modules())
        raise UsageError(f"--init-modules: {family.name} has no module {unknown[0]!r} (has {have})")
    for mod in family.modules().values():
        mod.to("cpu")
    load_module_tensors(family, module_tensors(src, names), f"--init {source}")
    for mod in family.modules().values():
        mod.to(family.device)


def export_reference(run_dir: str | os.PathLike[str], name: str | None = None, extra_card: dict | None = None) -> Path:
    """Ship a run's latest weights as fp16 safetensors + model.json under ``generators/assets/<name>/``.

    A module ``X`` is left out when ``X_ema`` exists (the EMA weights are the ones that sample well, and it
    halves the size budget), and so are modules borrowed from another model the config names.
    """
    run = Path(run_dir)
    opts = json.loads((run / "options.json").read_text())
    fam = load_run(run, device="cpu")
    mods = fam.modules()
    borrowed = set(fam.borrowed_modules())
    keep = [m for m in mods if f"{m}_ema" not in mods and m not in borrowed]
    tensors = {
        k: (v.half() if v.is_floating_point() else v) for k, v in module_tensors(fam, keep).items()
    }
    name = name or opts["family"]
    d = ASSETS / name
    d.mkdir(parents=True, exist_ok=True)
    save_tensors(d / "model.safetensors", tensors, {"format": "pt", "family": opts["family"]})
    card = {
        "family": opts["family"],
        "tags": opts.get("tags", {}),
        "config": opts["config"],
        "steps": fam.checkpoint.step,  # type: ignore[attr-defined]
        "data": opts.get("data", []),
        "data_hash": opts.get("data_hash", ""),
        "n_images": opts.get("n_images", 0),
        "modules": keep,
        "dtype": "float16",
        "trained_from_run": run.name,
        **(extra_card or {}),
    }
    (d / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    return d
