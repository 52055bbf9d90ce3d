"""Model files: ``model.safetensors`` (weights) + ``model.json`` (everything needed to use them), never pickles.

``model.json`` keys: ``format`` (``deepfake-forensics-model``), ``version``, ``detector`` (registered name),
``config`` (the detector's config dataclass), ``preprocess`` (:class:`~detectors.base.PreprocessSpec`),
``calibration`` (:mod:`detectors.calibration` dict), ``thresholds`` (``balanced``, ``fpr1``, ``fpr01``), ``training``
(datasets with manifest sha256, families, counts, command), ``metrics``, ``licence``, ``dtype``, ``created``.

:func:`load_model` is the contract ``scan`` codes against::

    model = load_model("default")            # or a directory, a model.json, or a .safetensors file
    p = model.predict_proba(faces)           # list of aligned uint8 RGB crops -> calibrated P(fake), shape (N,)
    heat = model.explain(faces[0])           # HxW float in [0, 1] at the face's resolution

Loading never unpickles. ``.pt`` / ``.pth`` / ``.ckpt`` / ``.bin`` files are refused with one line; with
``allow_pickle=True`` a state dict is read through ``torch.load(weights_only=True)`` (tensors only, no code).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forensics_core.errors import ForensicsError, ModelFileError
from forensics_core.hashing import sha256_file
from forensics_core.thresholds import FALLBACK_THRESHOLDS, THRESHOLD_POLICIES

FORMAT = "deepfake-forensics-model"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CARD = "model.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


def check_weights_file(path: str | os.PathLike[str], allow_pickle: bool = False) -> Path:
    """``path`` if it is a weights file :func:`read_state_dict` would read, checked without opening it or importing
    torch (a scan's driver checks a model this way before any worker loads it)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: weights file does not exist")
    if p.suffix.lower() != ".safetensors" and not allow_pickle:
        raise ModelFileError(
            f"{p}: refusing to load a pickle-based file ({p.suffix or 'no suffix'}); convert it to safetensors, "
            "or pass allow_pickle=True to read tensors only (torch.load weights_only=True)"
        )
    return p


def read_state_dict(path: str | os.PathLike[str], allow_pickle: bool = False) -> dict[str, Any]:
    """Tensors from a safetensors file; pickled formats only with ``allow_pickle`` and ``weights_only=True``."""
    import torch

    p = check_weights_file(path, allow_pickle)
    if p.suffix.lower() != ".safetensors":
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only raises UnpicklingError for anything but tensors/containers
            raise ModelFileError(f"{p}: not a plain tensor state dict ({type(exc).__name__})") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ModelFileError(f"{p}: expected a dict of tensors")
        return dict(obj)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{p}: not a readable safetensors file ({str(exc).splitlines()[0][:120]})") from None


def resolve_model_dir(path_or_name: str) -> Path:
    """``default`` / a shipped or user model name -> its directory; a dir, model.json or .safetensors -> its dir."""
    from forensics_core.config import ASSETS_DIR, home_dir

    p = Path(path_or_name).expanduser()
    if p.suffix.lower() in PICKLE_SUFFIXES:
        return p
    if p.is_dir():
        return p
    if p.is_file():
        return p.parent
    for root in (ASSETS_DIR / "models", home_dir() / "models"):
        cand = root / path_or_name
        if (cand / CARD).is_file():
            return cand
    raise ModelFileError(f"{path_or_name}: no such model directory, file, or installed model name")


@dataclass
class Model:
    """A detector ready to use: weights, preprocessing, calibration and threshold presets (the scan contract)."""

    name: str
    sha256: str
    card: dict[str, Any]
    preprocess: Any  # detectors.base.PreprocessSpec
    thresholds: dict[str, float]
    detector: Any  # detectors.base.Detector (eval mode)
    calibrator: Any  # detectors.calibration.Calibrator
    device: Any = None
    path: str = ""
    batch_size: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    def logits(self, faces: list[np.ndarray]) -> np.ndarray:
        """Raw detector logits for uint8 RGB crops (batched)."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(faces), self.batch_size):
                x = self.preprocess.to_tensor(faces[i : i + self.batch_size], self.device)
                out.append(self.detector(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def predict_proba(self, faces: list[np.ndarray]) -> np.ndarray:
        """Calibrated P(fake) per face, shape (N,)."""
        return self.calibrator.predict_proba(self.logits(faces)).astype(np.float64)

    def explain(self, face: np.ndarray) -> np.ndarray:
        """HxW heatmap in [0, 1] at the face's own resolution."""
        import cv2

        x = self.preprocess.to_tensor([face], self.device)
        heat = self.detector.explain(x)[0].astype(np.float32)
        h, w = np.asarray(face).shape[:2]
        return np.clip(cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def save_model(
    out_dir: str | os.PathLike[str],
    detector: Any,
    calibrator: Any,
    thresholds: dict[str, float],
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    licence: str = "",
    fp16: bool = False,
    description: str = "",
    name: str = "",
    threshold_support: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``model.json`` atomically into ``out_dir``; returns the directory.

    ``threshold_support`` (:func:`detectors.calibration.preset_support`) says on how many reals each preset rests."""
    from safetensors.torch import save_file

    from forensics_core._version import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in detector.state_dict().items():
        v = v.detach().cpu().contiguous()
        if fp16 and v.is_floating_point():
            v = v.half()
        state[k] = v.clone()
    tmp = out / (WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT, "detector": detector.name})
    os.replace(tmp, out / WEIGHTS)
    os.chmod(out / WEIGHTS, 0o644)  # safetensors writes 0600 temp files; a model is meant to be shared
    card = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "toolkit_version": __version__,
        "name": name or detector.name,
        "detector": detector.name,
        "description": description,
        "config": detector.config_dict(),
        "preprocess": detector.preprocess.to_dict(),
        "calibration": calibrator.to_dict(),
        "thresholds": {k: float(thresholds[k]) for k in THRESHOLD_POLICIES if k in thresholds},
        "threshold_rule": "flag as fake when calibrated P(fake) >= threshold",
        "threshold_support": threshold_support or {},
        "training": training or {},
        "metrics": metrics or {},
        "licence": licence,
        "dtype": "float16" if fp16 else "float32",
        "parameters": int(sum(p.numel() for p in detector.parameters())),
        "weights_sha256": sha256_file(out / WEIGHTS),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmpj = out / (CARD + ".tmp")
    tmpj.write_text(json.dumps(card, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmpj, out / CARD)
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


#: what a model is for and where it fails, as ``model.json`` keys (a string or a list of lines) -> the heading of
#: the ``MODEL_CARD.md`` section that says the same in cards written before the keys existed
CARD_STATEMENTS = {
    "intended_use": "Intended use",
    "out_of_scope": "Out of scope",
    "failure_modes": "Known failure modes",
}
MODEL_CARD_MD = "MODEL_CARD.md"


def card_statements(card: dict[str, Any], model_dir: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """The card's statements of intended use, out-of-scope uses and measured failure modes, as lists of lines.

    Why here: they are part of what a model file tells its users (torchvision's ``Weights`` carry their metadata),
    and a report or service must not parse markdown of its own. ``model.json`` keys win; for each key it lacks,
    the same-named section of ``MODEL_CARD.md`` beside it is read (bullets become lines, markdown emphasis is
    dropped). A statement that is nowhere is left out, never invented."""
    sections = _markdown_sections(Path(model_dir) / MODEL_CARD_MD) if model_dir else {}
    out: dict[str, list[str]] = {}
    for key, heading in CARD_STATEMENTS.items():
        value = card.get(key)
        if isinstance(value, str):
            lines = [value]
        elif isinstance(value, list):
            lines = [str(v) for v in value]
        else:
            lines = next((body for title, body in sections.items() if title.startswith(heading.lower())), [])
        lines = [x for x in (" ".join(str(v).split()) for v in lines) if x]
        if lines:
            out[key] = lines
    return out


def _markdown_sections(path: Path) -> dict[str, list[str]]:
    """``## Heading`` (lower case) -> its paragraphs and bullets as plain lines (tables, code and ``###``
    subsections left out); ``{}`` when the file is absent or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    sections: dict[str, list[str]] = {}
    body: list[str] | None = None  # the current "## " section's lines; None outside one
    open_line = False  # the last line of body continues on the next source line (a wrapped paragraph or bullet)
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            body = sections.setdefault(line.lstrip("#").strip().lower(), []) if line.startswith("## ") else None
            open_line = False
        elif body is None:
            continue
        elif not line or line.startswith(("|", "```")):
            open_line = False
        elif line.startswith(("- ", "* ")):
            body.append(_plain_markdown(line[2:]))
            open_line = True
        elif open_line:
            body[-1] += " " + _plain_markdown(line)
        else:
            body.append(_plain_markdown(line))
            open_line = True
    return sections


def _plain_markdown(line: str) -> str:
    """``**bold**``, ``` `code` ``` and ``[text](url)`` -> their text."""
    import re

    return re.sub(r"\*\*(.+?)\*\*|`([^`]*)`|\[([^\]]*)\]\([^)]*\)",
                  lambda m: next(g for g in m.groups() if g is not None), line)  # fmt: skip


def read_card(model_dir: Path) -> dict[str, Any]:
    cp = model_dir / CARD
    if not cp.is_file():
        raise ModelFileError(f"{model_dir}: no {CARD} beside the weights (a model file needs its metadata)")
    try:
        card = json.loads(cp.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{cp}: invalid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ModelFileError(f"{cp}: not a {FORMAT} card (missing or wrong 'format')")
    if int(card.get("version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"{cp}: format version {card.get('version')} is newer than this toolkit supports")
    for key in ("detector", "config", "preprocess"):
        if key not in card:
            raise ModelFileError(f"{cp}: missing '{key}'")
    return card


def model_files(path_or_name: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights file, folder of its card) of a model directory, its ``model.json`` / weights file, a bare pickle or
    an installed name; neither is opened (see :func:`load_model`)."""
    src = Path(str(path_or_name)).expanduser()
    model_dir = resolve_model_dir(str(path_or_name))
    if model_dir.suffix.lower() in PICKLE_SUFFIXES:  # a bare pickle file: weights here, card beside it
        return model_dir, model_dir.parent
    if src.is_file() and src.suffix.lower() == ".safetensors":
        return src, model_dir
    return model_dir / WEIGHTS, model_dir


def load_model(
    path_or_name: str | os.PathLike[str] = "default", device: str = "auto", allow_pickle: bool = False
) -> Model:
    """Load a model directory (or its ``model.json`` / ``model.safetensors``, or an installed name) for inference."""
    from detectors.base import PreprocessSpec
    from detectors.calibration import calibrator_from_dict
    from detectors.registry import build_detector
    from forensics_core.config import resolve_device

    weights, model_dir = model_files(path_or_name)
    card = read_card(model_dir)
    state = read_state_dict(weights, allow_pickle=allow_pickle)
    try:
        det = build_detector(card["detector"], **config_from_json(card["config"]))
    except ForensicsError as exc:
        raise ModelFileError(f"{model_dir / CARD}: {exc}") from None
    own = det.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelFileError(
            f"{weights}: weights do not match detector '{card['detector']}' "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]})"
        )
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise ModelFileError(f"{weights}: tensor shape mismatch for {bad[:3]}")
    det.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    dev = resolve_device(device)
    det.to(dev).eval()
    for p in det.parameters():
        p.requires_grad_(False)
    return Model(
        name=str(card.get("name") or card["detector"]),
        sha256=sha256_file(weights),
        card=card,
        preprocess=PreprocessSpec.from_dict(card["preprocess"]),
        thresholds={k: float(v) for k, v in (card.get("thresholds") or FALLBACK_THRESHOLDS).items()},
        detector=det,
        calibrator=calibrator_from_dict(card.get("calibration")),
        device=dev,
        path=str(model_dir),
    )


def config_from_json(cfg: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; dataclass fields typed as tuples get tuples back."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
