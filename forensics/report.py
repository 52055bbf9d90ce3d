"""``--report report.html``: one self-contained HTML file an analyst can open, archive or e-mail.

Everything is inline: CSS in the template, images as base64 PNG ``data:`` URIs (thumbnails, face crops, Grad-CAM
overlays, ELA / noise maps, spectra), so the file works offline and leaks no request to anyone. Jinja2 runs with
autoescaping on: file names, EXIF strings and model-card text are untrusted and always render as text (a file
called ``<script>alert(1)</script>.jpg`` shows exactly that name).

The report *renders* results; it never analyses. :class:`ReportBuilder` turns each :class:`FileResult` into a
small view (encoded images + the record) as results stream by, so the images of a large batch are not kept as
arrays; only the encoded PNGs (a few tens of kB per file) stay until :meth:`ReportBuilder.write`.

What a reader needs to trust it, beside the numbers: a note on files the model cannot vouch for (no face; video,
scored frame by frame), a legend saying what each strength and map means (from each analysis' registration), and
the model card as statements (training sources by name, intended use, out of scope, measured failure modes) rather
than raw ``model.json``: a report is archived and e-mailed, so it carries no path of the machine that trained the
model (:func:`card_view`); inputs are shown relative to the working directory when they lie inside it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forensics.evidence import EVIDENCE, evidence_meta
from forensics_core.outputs import display_path

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
HEAT_SIDE = 192  # heatmaps are shown at this size: enough to see where, small enough to keep the file light


def png_data_uri(img: np.ndarray, max_side: int | None = None, fmt: str = "png") -> str:
    """RGB or grey uint8 array -> ``data:image/png;base64,...`` (optionally downscaled).

    Heatmaps and face crops are PNG (lossless: the analyst looks at pixels); photo thumbnails may be JPEG
    (``fmt='jpeg'``), which keeps a report of hundreds of files in the low megabytes.
    """
    import cv2

    arr = np.asarray(img)
    if max_side and max(arr.shape[:2]) > max_side:
        s = max_side / max(arr.shape[:2])
        size = (max(1, int(arr.shape[1] * s)), max(1, int(arr.shape[0] * s)))
        arr = cv2.resize(arr, size, interpolation=cv2.INTER_AREA)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ext, params, mime = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 85], "jpeg") if fmt == "jpeg" else (".png", [], "png")
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise ValueError(f"{mime} encoding failed")
    return f"data:image/{mime};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def colour_map(heat: np.ndarray) -> np.ndarray:
    """[0, 1] float map -> RGB uint8 (inferno-like OpenCV colour map)."""
    import cv2

    u8 = (np.clip(np.nan_to_num(heat), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def overlay(face: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heatmap blended over the face crop it explains."""
    import cv2

    h, w = face.shape[:2]
    if heat.shape[:2] != (h, w):
        heat = cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return (face.astype(np.float32) * (1 - alpha) + colour_map(heat).astype(np.float32) * alpha).astype(np.uint8)


@dataclass
class FaceView:
    record: dict[str, Any]
    crop: str | None = None
    heatmap: str | None = None
    explanation: str = ""
    evidence: str = ""  # the name of the face analysis whose heatmap is shown
    label: str = ""  # its caption, from the analysis' registration


@dataclass
class FileView:
    record: dict[str, Any]
    display: str
    anchor: str
    thumbnail: str | None = None
    faces: list[FaceView] = field(default_factory=list)
    maps: list[tuple[str, str]] = field(default_factory=list)  # (label, data uri)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the score of this file can and cannot say
    error: str = ""  # the record's error with its path shown as ``display``
    duplicate_of: str = ""


#: per-file notes (:func:`file_notes`): what the scan did with a file the model was not made for
VIDEO_NOTE = (
    "video: every sampled frame's faces are scored on their own and pooled per face track (see the track table; the "
    "file takes the highest track); motion, lip-sync and other temporal manipulations are not modelled, and the "
    "audio is not analysed"
)
NO_FACE_NOTE = (
    "no face found: scored from a centre crop of the whole {what}; outside what a face model can vouch for "
    "(read this score as weak evidence either way)"
)


def file_notes(rec: dict[str, Any]) -> list[str]:
    """The caveats a scored file's record implies, in words: a video is scored frame by frame per face track, a
    file without a face is scored from a centre crop. Errors get none (their error line says it all)."""
    if rec.get("status") != "ok":
        return []
    notes = []
    video = rec.get("media_type") == "video"
    if rec.get("no_face"):
        notes.append(NO_FACE_NOTE.format(what="frame, in up to 8 sampled frames" if video else "image"))
    if video:
        notes.append(VIDEO_NOTE)
    return notes


class ReportBuilder:
    """Collects results as they stream by; :meth:`write` renders the HTML file atomically."""

    MAX_FACES_SHOWN = 12

    def __init__(
        self, model: Any = None, threshold: dict[str, Any] | None = None, title: str = "forensics scan"
    ) -> None:
        self.model = model
        self.threshold = threshold or {}
        self.title = title
        self.files: list[FileView] = []

    def add(self, result: Any) -> None:
        rec = result.to_dict()
        if not self.threshold and rec.get("threshold"):
            self.threshold = rec["threshold"]
        view = FileView(record=rec, display=display_path(result.path), anchor=f"f{len(self.files)}",
                        notes=file_notes(rec))  # fmt: skip
        error = rec.get("error") or ""
        view.error = error.replace(rec["path"], view.display) if rec.get("path") else error
        view.duplicate_of = display_path(rec["duplicate_of"]) if rec.get("duplicate_of") else ""
        if getattr(result, "thumbnail", None) is not None:
            view.thumbnail = png_data_uri(result.thumbnail, 256, fmt="jpeg")
        for ev, ev_rec in zip(result.evidence, rec["evidence"]):
            view.evidence.append(_evidence_view(ev_rec))
            meta = evidence_meta(ev.name)
            if ev.heatmap is not None and meta.get("label"):  # the analysis' registration says how to show it
                img = colour_map(ev.heatmap) if meta.get("colour", True) else (ev.heatmap * 255).astype(np.uint8)
                view.maps.append((meta["label"], png_data_uri(img, HEAT_SIDE)))
        shown = sorted(zip(result.faces, rec["faces"]), key=lambda fr: -fr[0].fake_probability)
        for face, frec in shown[: self.MAX_FACES_SHOWN]:
            fv = FaceView(record=frec)
            if face.crop is not None:
                fv.crop = png_data_uri(face.crop, HEAT_SIDE)
                cam = next((e for e in face.evidence if e.heatmap is not None), None)
                if cam is not None:
                    fv.heatmap = png_data_uri(overlay(face.crop, cam.heatmap), HEAT_SIDE)
                    fv.explanation = cam.summary
                    fv.evidence = cam.name
                    fv.label = evidence_meta(cam.name).get("label") or cam.name
            view.faces.append(fv)
        self.files.append(view)

    def context(self) -> dict[str, Any]:
        recs = [f.record for f in self.files]
        ok = [r for r in recs if r["status"] == "ok"]
        card = dict(getattr(self.model, "card", {}) or {})
        return {
            "title": self.title,
            "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "files": self.files,
            "summary": {
                "files": len(recs),
                "flagged": sum(r["verdict"] == "flagged" for r in ok),
                "not_flagged": sum(r["verdict"] == "not_flagged" for r in ok),
                "errors": len(recs) - len(ok),
                "duplicates": sum(r["duplicate_of"] is not None for r in recs),
            },
            "threshold": self.threshold,
            "thresholds": dict(getattr(self.model, "thresholds", {}) or {}),
            "model_name": getattr(self.model, "name", ""),
            "model_sha256": getattr(self.model, "sha256", ""),
            "unaligned_crop": _unaligned_crop_label(self.model),
            "card": card_view(card, getattr(self.model, "path", "") or None, getattr(self.model, "sha256", "")),
            "legend": evidence_legend(self.files),
        }

    def render(self) -> str:
        import jinja2

        from forensics import __version__

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
            autoescape=True,  # every string is untrusted: file names, EXIF, model card
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["pct"] = lambda v: "" if v is None else f"{100 * float(v):.1f}%"
        env.filters["num"] = lambda v, d=3: "" if v is None else f"{float(v):.{d}f}"
        env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
        return env.get_template(TEMPLATE).render(version=__version__, **self.context())

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Render to ``path`` via a temporary file + rename, so a crash never leaves half a report."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        html = self.render()
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html.tmp", dir=str(out.parent))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(html)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary document
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out


def _evidence_view(rec: dict[str, Any]) -> dict[str, Any]:
    details = {k: v for k, v in (rec.get("details") or {}).items() if k not in ("radial_profile", "tables")}
    return {**rec, "short_details": details}


def _unaligned_crop_label(model: Any) -> str:
    """How a face that was not aligned was cut: the model's ``native`` policy (upright at whole pixels) or a box."""
    policy = getattr(getattr(model, "preprocess", None), "crop", "")
    return "native crop" if policy == "native" else "box crop"


#: an absolute POSIX path (``/work/scratch/data/shared-src``) inside free text; URLs (``https://x/y``) and relative
#: paths (``data/x``) do not match
_ABS_PATH = re.compile(r"(?<![\w.~$/:])/(?:[\w.+@-]+/)+([\w.+@-]*)")


def no_paths(text: Any) -> str:
    """``text`` with every absolute path cut to its last part (``/work/scratch/data/shared-src`` -> ``shared-src``):
    card text written on the training machine must not carry that machine's layout into a report."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "...", str(text))


@dataclass
class CardView:
    """The model card as a report shows it: which model (name, weights hash), what trained it (sources by name,
    families), how its verdicts are set (policies and how many reals each rests on), what it is for and where it
    fails. Fields the card lacks stay empty and are not shown."""

    name: str = ""
    weights_sha256: str = ""
    detector: str = ""
    description: str = ""
    created: str = ""
    input: str = ""
    calibration: str = ""
    licence: str = ""
    policies: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    fused_from: list[str] = field(default_factory=list)
    fine_tuned_from: str = ""
    statements: dict[str, list[str]] = field(default_factory=dict)


def card_view(card: dict[str, Any], model_dir: str | None = None, sha256: str = "") -> CardView:
    """``model.json`` (+ ``MODEL_CARD.md`` beside it, :func:`detectors.modelfile.card_statements`) -> a
    :class:`CardView` without a single absolute path; every key is optional."""
    from detectors.modelfile import card_statements

    training = card.get("training") or {}
    pre = card.get("preprocess") or {}
    support = card.get("threshold_support") or {}
    view = CardView(
        name=no_paths(card.get("name") or card.get("detector") or ""),
        weights_sha256=str(sha256 or card.get("weights_sha256") or ""),
        detector=no_paths(card.get("detector") or ""),
        description=no_paths(card.get("description") or ""),
        created=str(card.get("created") or ""),
        input=", ".join(x for x in (f"{pre['size']} px" if pre.get("size") else "",
                                     f"{pre['crop']} crop" if pre.get("crop") else "",
                                     f"margin {pre['margin']}" if pre.get("margin") is not None else "") if x),
        calibration=str((card.get("calibration") or {}).get("kind") or ""),
        licence=no_paths(card.get("licence") or ""),
        families=[no_paths(f) for f in training.get("families") or []],
        fused_from=[f"{no_paths(m.get('name', '?'))} ({str(m.get('sha256', ''))[:12]})"
                    for m in training.get("fused_from") or []],
        statements={k: [no_paths(x) for x in v] for k, v in card_statements(card, model_dir).items()},
    )  # fmt: skip
    init = training.get("init_from") or {}
    if init.get("name"):
        view.fine_tuned_from = f"{no_paths(init['name'])} ({str(init.get('sha256', ''))[:12]})"
    for name, value in (card.get("thresholds") or {}).items():
        sup = support.get(name) or {}
        view.policies.append({"name": name, "value": value, "fpr": sup.get("fpr"), "n_real": sup.get("n_real"),
                              "reals_above": sup.get("reals_above"), "estimable": sup.get("estimable")})  # fmt: skip
    for d in training.get("datasets") or []:
        if not isinstance(d, dict):
            continue
        view.sources.append({
            "name": os.path.basename(str(d.get("path") or "").rstrip("/\\")) or "?",
            "rows": d.get("n"),
            "labels": ", ".join(f"{k} {v}" for k, v in (d.get("by_label") or {}).items()),
            "families": ", ".join(no_paths(f) for f in d.get("families") or []),
            "manifest": str(d.get("manifest_sha256") or "")[:12],
        })  # fmt: skip
    return view


def evidence_legend(files: list[FileView]) -> list[dict[str, str]]:
    """One row per analysis shown in the report, in registry order: its name, caption, what it looks at and what
    its strength measures (``strength`` in its registration; a plug-in analysis that declares none says so)."""
    shown = {e["name"] for f in files for e in f.evidence}
    shown |= {fv.evidence for f in files for fv in f.faces if fv.evidence}
    order = [n for n in EVIDENCE.names(sort=False) if n in shown] + sorted(shown - set(EVIDENCE.names()))
    rows = []
    for name in order:
        meta = evidence_meta(name)
        rows.append({"name": name, "label": meta.get("label") or "", "description": meta.get("description") or "",
                     "strength": meta.get("strength") or "scale not declared by this analysis"})  # fmt: skip
    return rows
