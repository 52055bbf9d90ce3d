"""``forensics doctor``: can this machine run the toolkit, and with what?

Each check is an entry in the ``DOCTOR_CHECKS`` registry returning a :class:`CheckResult`, so plugins (a new
detector backend, a GPU runtime) add their own checks without touching this file. A check never raises: an
exception becomes a failed result with the exception in its detail, because a broken dependency is exactly what
the doctor is there to report.

Exit codes: 0 when every *essential* check passes (optional ones, such as CUDA or the shared data folder, only
warn), 1 when an essential check fails.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import click

from forensics_core.registry import Registry


@dataclass
class CheckResult:
    """Outcome of one check. ``data`` holds machine-readable facts (versions, device names) for ``--json``."""

    name: str
    ok: bool
    detail: str
    essential: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.essential else "warn")


CheckFn = Callable[[], tuple[bool, str, dict[str, Any]]]
DOCTOR_CHECKS: Registry[CheckFn] = Registry("doctor check", entry_point_group="forensics.doctor_checks")


def check(name: str, order: int, essential: bool = True) -> Callable[[CheckFn], CheckFn]:
    """Register a check. It returns ``(ok, one-line detail, data)``; ``essential`` failures make the exit code 1."""
    return DOCTOR_CHECKS.register(name, order=order, essential=essential)


def run_check(name: str) -> CheckResult:
    entry = DOCTOR_CHECKS.get(name)
    essential = bool(entry.meta.get("essential", True))
    t0 = time.perf_counter()
    try:
        ok, detail, data = entry.obj()
    except Exception as exc:  # the doctor reports broken dependencies instead of crashing on them
        ok, detail, data = False, f"{type(exc).__name__}: {exc}", {}
    return CheckResult(
        name, bool(ok), " ".join(str(detail).split()), essential, data, round(time.perf_counter() - t0, 3)
    )


def run_checks(pattern: str = "*") -> list[CheckResult]:
    entries = sorted(DOCTOR_CHECKS.entries(pattern), key=lambda e: (e.meta.get("order", 100), e.name))
    return [run_check(e.name) for e in entries]


# -- checks -----------------------------------------------------------------------------------------------------
@check("python", order=10)
def _python() -> tuple[bool, str, dict[str, Any]]:
    v = sys.version_info
    ok = v >= (3, 10)
    return (
        ok,
        f"{platform.python_version()} ({sys.executable})" + ("" if ok else "; need >= 3.10"),
        {"version": platform.python_version(), "executable": sys.executable},
    )


@check("platform", order=20, essential=False)
def _platform() -> tuple[bool, str, dict[str, Any]]:
    return (
        True,
        f"{platform.system()} {platform.release()} {platform.machine()}",
        {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
    )


@check("torch", order=30)
def _torch() -> tuple[bool, str, dict[str, Any]]:
    import torch

    return (
        True,
        f"torch {torch.__version__} ({torch.get_num_threads()} CPU threads)",
        {"version": torch.__version__, "threads": torch.get_num_threads()},
    )


@check("cuda", order=40, essential=False)
def _cuda() -> tuple[bool, str, dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return (
            False,
            f"not available (torch built with CUDA {torch.version.cuda or 'none'}); CPU will be used",
            {"available": False, "built_with": torch.version.cuda},
        )
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return (
        True,
        f"{len(names)} device(s): {', '.join(names)} (CUDA {torch.version.cuda})",
        {"available": True, "devices": names, "cuda": torch.version.cuda},
    )


@check("mps", order=45, essential=False)
def _mps() -> tuple[bool, str, dict[str, Any]]:
    import torch

    mps = getattr(torch.backends, "mps", None)
    ok = bool(mps and mps.is_available())
    return ok, "available" if ok else "not available (Apple GPUs only)", {"available": ok}


@check("opencv", order=50)
def _opencv() -> tuple[bool, str, dict[str, Any]]:
    import os

    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    cascade = os.path.join(folder, "haarcascade_frontalface_default.xml") if folder else ""
    loads = bool(cascade) and os.path.isfile(cascade) and not cv2.CascadeClassifier(cascade).empty()
    detail = f"OpenCV {cv2.__version__}; Haar face cascade " + ("loads" if loads else "MISSING (needs opencv 4.x)")
    return loads, detail, {"version": cv2.__version__, "haar_cascade": cascade if loads else None}


@check("ffmpeg", order=60)
def _ffmpeg() -> tuple[bool, str, dict[str, Any]]:
    import av
    from av.codec import Codec

    def has(name: str, mode: str) -> bool:
        try:
            Codec(name, mode)
            return True
        except Exception:
            return False

    codecs = {
        "libx264 encoder": has("libx264", "w"),
        "h264 decoder": has("h264", "r"),
        "aac encoder": has("aac", "w"),
        "vp9 decoder": has("vp9", "r"),
        "hevc decoder": has("hevc", "r"),
    }
    ffv = getattr(av, "ffmpeg_version_info", "?")
    missing = [k for k in ("libx264 encoder", "h264 decoder") if not codecs[k]]
    extras = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in codecs.items())
    detail = f"PyAV {av.__version__}, FFmpeg {ffv}; {extras}"
    if missing:
        detail += f"; MISSING {', '.join(missing)}"
    return not missing, detail, {"pyav": av.__version__, "ffmpeg": str(ffv), "codecs": codecs}


@check("image-formats", order=65)
def _image_formats() -> tuple[bool, str, dict[str, Any]]:
    import PIL

    from forensics_core.media import MEDIA_FORMATS
    from forensics_core.media.image import decoder_available

    fmts = {e.name: decoder_available(e.obj) for e in MEDIA_FORMATS.entries() if e.obj.kind == "image"}
    ok = fmts.get("jpeg", False) and fmts.get("png", False)
    listed = ", ".join(f"{k}{'' if v else ' (no decoder)'}" for k, v in fmts.items())
    return ok, f"Pillow {PIL.__version__}: {listed}", {"pillow": PIL.__version__, "formats": fmts}


@check("mtcnn", order=70)
def _mtcnn() -> tuple[bool, str, dict[str, Any]]:
    import facenet_pytorch
    import torch
    from facenet_pytorch import MTCNN

    with torch.inference_mode():
        net = MTCNN(device="cpu")  # loads the P/R/O-net weights bundled in the wheel; no download
    n = sum(p.numel() for p in net.parameters())
    ver = getattr(facenet_pytorch, "__version__", "2.5.x")
    return n > 0, f"facenet-pytorch {ver}: MTCNN weights load on CPU ({n:,} parameters)", {"parameters": n}


@check("default-model", order=80, essential=False)
def _default_model() -> tuple[bool, str, dict[str, Any]]:
    from forensics_core.config import ASSETS_DIR

    card = ASSETS_DIR / "models" / "default" / "model.json"
    weights = card.with_name("model.safetensors")
    ok = card.is_file() and weights.is_file()
    detail = f"{card.parent}" if ok else f"not shipped yet ({card} missing); scan needs --model"
    data: dict[str, Any] = {"path": str(card.parent), "present": ok}
    if ok:
        try:
            meta = json.loads(card.read_text())
            data["name"] = meta.get("name")
            detail = f"{meta.get('name', 'default')} at {card.parent}"
        except (OSError, ValueError) as exc:
            return False, f"{card}: unreadable model card ({exc})", data
    return ok, detail, data


@check("shared-data", order=90, essential=False)
def _shared_data() -> tuple[bool, str, dict[str, Any]]:
    from forensics_core.config import shared_data_dir

    root = shared_data_dir()
    if root is None:
        return False, "not configured (set FORENSICS_DATA or place data in ../shared/data)", {"path": None}
    # layout of ../shared/data: <category>/<set>/ (e.g. real_faces/ffhq128_bhunakit), labels.csv at the top
    sets = sorted(str(p.relative_to(root)) for p in root.glob("*/*") if p.is_dir() and not p.name.startswith("."))
    labels = (root / "labels.csv").is_file()
    detail = f"{root}: {len(sets)} sets ({', '.join(sets)}); labels.csv {'present' if labels else 'absent'}"
    return True, detail, {"path": str(root), "sets": sets, "labels_csv": labels}


# -- command ----------------------------------------------------------------------------------------------------
def _print_table(results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    style = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}
    table = Table(title="forensics doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for r in results:
        table.add_row(r.name, f"[{style[r.status]}]{r.status}[/]", r.detail)
    Console().print(table)


@click.command(epilog="Example: forensics doctor --json > env.json")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--only", default="*", show_default=True, help="Run only checks matching this wildcard.")
@click.option("--list", "list_", is_flag=True, help="List the registered checks and exit.")
def doctor(as_json: bool, only: str, list_: bool) -> int:
    """Report the environment: Python, torch, CUDA/MPS, OpenCV, FFmpeg codecs, MTCNN weights, models, data.

    Exits 0 when every essential check passes and 1 when one fails; optional checks (CUDA, MPS, the default
    model, the shared data folder) only warn.
    """
    if list_:
        for e in sorted(DOCTOR_CHECKS.entries(), key=lambda e: (e.meta.get("order", 100), e.name)):
            click.echo(f"{e.name}\t{'essential' if e.meta.get('essential', True) else 'optional'}")
        return 0
    results = run_checks(only)
    if not results:
        from forensics_core.errors import UsageError

        raise UsageError(f"--only {only!r} matches no check; known: {', '.join(DOCTOR_CHECKS.names())}")
    ok = all(r.ok for r in results if r.essential)
    if as_json:
        click.echo(json.dumps({"ok": ok, "checks": [asdict(r) | {"status": r.status} for r in results]}, indent=2))
    else:
        _print_table(results)
    return 0 if ok else 1
