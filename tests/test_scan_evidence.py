"""Evidence analyses: each returns a typed, JSON-serialisable result and reacts to the trace it is built for."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensics.evidence import (
    EVIDENCE,
    EvidenceResult,
    EvidenceSubject,
    list_evidence,
    resolve_evidence,
    run_face_evidence,
    run_file_evidence,
)

FILE_ANALYSES = (
    "ela", "jpeg", "metadata", "noise", "spectrum", "surround-noise", "blend-boundary", "cooccurrence", "jpeg-grid",
)  # fmt: skip
ALL_NAMES = "gradcam, ela, noise, spectrum, jpeg, metadata, surround-noise, blend-boundary, cooccurrence, jpeg-grid"


def _photo(seed: int = 0, side: int = 192) -> np.ndarray:
    """A smooth random 'scene' with texture: enough structure for JPEG, noise and spectrum statistics."""
    rng = np.random.default_rng(seed)
    base = rng.normal(128, 40, (side // 16, side // 16, 3))
    img = np.asarray(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize((side, side), Image.BICUBIC))
    return np.clip(img.astype(np.float32) + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _save_jpeg(arr: np.ndarray, path: Path, q: int) -> np.ndarray:
    Image.fromarray(arr).save(path, quality=q)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _subject(path: Path, pixels: np.ndarray, boxes=((48, 48, 144, 144),)) -> EvidenceSubject:
    return EvidenceSubject(path=str(path), media_type="image", pixels=pixels, face_boxes=list(boxes))


def test_registry_lists_all_builtin_analyses() -> None:
    assert set(list_evidence()) >= {"gradcam", *FILE_ANALYSES}
    assert resolve_evidence("none") == [] and resolve_evidence("ela, jpeg") == ["ela", "jpeg"]
    assert set(resolve_evidence("all")) == set(list_evidence())


def _registered(scope: str, media: str = "image") -> list[str]:
    """Every registered analysis of ``scope`` that runs on ``media``: a new analysis is tested without a list edit."""
    metas = {n: EVIDENCE.get(n).meta for n in list_evidence()}
    return [n for n, m in metas.items() if m["scope"] == scope and media in m["media"]]


def test_every_file_analysis_returns_a_typed_serialisable_result(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    pixels = _save_jpeg(_photo(), path, 85)
    names = _registered("file")
    assert set(FILE_ANALYSES) <= set(names)
    results = run_file_evidence(names, _subject(path, pixels))
    assert [r.name for r in results] == names
    for r in results:
        assert isinstance(r, EvidenceResult) and r.scope == "file" and r.error is None, (r.name, r.error)
        assert r.score is None or 0.0 <= r.score <= 1.0
        assert r.summary and "\n" not in r.summary
        d = json.loads(json.dumps(r.to_dict()))  # JSON-safe
        assert EvidenceResult.from_dict(d).name == r.name
        if r.heatmap is not None:
            assert r.heatmap.ndim == 2 and r.heatmap.min() >= 0.0 and r.heatmap.max() <= 1.0


def test_registration_carries_report_label_and_help() -> None:
    """The report captions and the ``--evidence`` help come from each analysis' registration, not from tables."""
    from forensics.evidence import evidence_help, evidence_meta

    assert evidence_meta("ela")["label"] == "error level" and evidence_meta("noise")["label"] == "noise residual"
    assert evidence_meta("spectrum")["label"] == "spectrum (log power)" and evidence_meta("spectrum")["colour"] is False
    assert evidence_meta("gradcam")["label"] == "detector heatmap (Grad-CAM)"
    assert evidence_meta("jpeg")["label"] is None and evidence_meta("no-such-analysis") == {}
    assert evidence_help() == (
        f"Evidence analyses: all, none, or a comma list ({ALL_NAMES}). auto = all with --report, none otherwise."
    )
    assert evidence_meta("cooccurrence")["label"] == "residual co-occurrence vs surround"
    for name in list_evidence():
        assert name in evidence_help() and EVIDENCE.get(name).description, name
        # the report's legend prints what each strength measures: every built-in analysis declares its scale
        assert len(evidence_meta(name).get("strength") or "") > 20, name


def test_scan_help_lists_every_registered_analysis(capsys: pytest.CaptureFixture[str]) -> None:
    import cli

    assert cli.main(["scan", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"comma list ({ALL_NAMES})" in out
    for name in list_evidence():
        assert name in out, name
    # listing the analyses registers them, which must not import the heavy libraries they use when they run
    code = (
        "import sys, cli; cli.main(['scan', '--help']); "
        "print('HEAVY', [m for m in ('torch', 'cv2') if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "gradcam, ela, noise" in " ".join(r.stdout.split()) and "HEAVY []" in r.stdout, r.stderr


def test_jpeg_quality_and_double_compression_hint(tmp_path: Path) -> None:
    from forensics.evidence.jpeg import jpeg

    once = tmp_path / "once.jpg"
    px1 = _save_jpeg(_photo(1, 256), once, 75)
    r1 = jpeg(_subject(once, px1))
    assert r1.details["estimated_quality"] == 75 and r1.details["standard_ijg_tables"]
    twice = tmp_path / "twice.jpg"
    px2 = _save_jpeg(_save_jpeg(_photo(1, 256), tmp_path / "first.jpg", 50), twice, 90)
    r2 = jpeg(_subject(twice, px2))
    assert r2.details["estimated_quality"] == 90
    assert r2.details["double_compression_score"] > r1.details["double_compression_score"]
    png = tmp_path / "x.png"
    Image.fromarray(px1).save(png)
    assert jpeg(_subject(png, px1)).score is None  # not applicable, said so


def test_spectrum_finds_upsampling_peaks() -> None:
    from forensics.evidence.spectrum import spectrum

    natural = _photo(3, 128)
    # A transposed-convolution upsampler's uneven kernel overlap leaves a fixed period-2 "checkerboard" gain.
    up2 = np.asarray(Image.fromarray(natural[::2, ::2].copy()).resize((128, 128), Image.BILINEAR), np.float32)
    yy, xx = np.mgrid[0:128, 0:128]
    checker = 1.0 + 0.06 * ((xx % 2) * 2 - 1) * ((yy % 2) * 2 - 1)
    upsampled = np.clip(up2 * checker[..., None], 0, 255).astype(np.uint8)
    up = spectrum(EvidenceSubject("u.png", "image", upsampled))
    nat = spectrum(EvidenceSubject("n.png", "image", natural))
    assert any(p["period_px"] == 2 for p in up.details["peaks"]), up.details["peaks"]
    assert up.score > nat.score
    assert len(up.details["radial_profile"]) == 48


def test_ela_and_noise_see_a_pasted_region(tmp_path: Path) -> None:
    from forensics.evidence.ela import ela
    from forensics.evidence.noise import noise

    base = _photo(4, 192)
    spliced = base.copy()
    spliced[48:144, 48:144] = np.asarray(Image.fromarray(base[48:144, 48:144]).filter(_blur()))  # smoothed "face"
    path = tmp_path / "s.png"
    Image.fromarray(spliced).save(path)
    r_noise = noise(_subject(path, spliced))
    assert r_noise.details["face_to_background"] < 0.8 and r_noise.score > 0.2
    r_ela = ela(_subject(path, spliced))
    assert r_ela.details["face_to_background"] is not None and r_ela.heatmap.shape == spliced.shape[:2]
    assert noise(_subject(path, spliced, boxes=())).score is None  # no face: nothing to compare


def _blur():
    from PIL import ImageFilter

    return ImageFilter.GaussianBlur(2)


def _jpeg_with_segments(pixels: np.ndarray, segments: list[tuple[int, bytes]]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    extra = b"".join(b"\xff" + bytes([m]) + struct.pack(">H", len(p) + 2) + p for m, p in segments)
    return data[:2] + extra + data[2:]


def test_metadata_reports_xmp_software_and_c2pa(tmp_path: Path) -> None:
    from forensics.evidence.metadata import metadata

    px = _photo(5, 64)
    xmp = (
        b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:Description "
        b'xmp:CreatorTool="Adobe Firefly" Iptc4xmpExt:DigitalSourceType="trainedAlgorithmicMedia"/></x:xmpmeta>'
    )
    jumbf = b"JP\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x20jumb\x00\x00\x00\x18jumdc2pa\x00\x11\x00\x10"
    path = tmp_path / "gen.jpg"
    path.write_bytes(_jpeg_with_segments(px, [(0xE1, xmp), (0xEB, jumbf)]))
    r = metadata(_subject(path, px))
    assert r.details["has_xmp"] and r.details["xmp"]["CreatorTool"] == "Adobe Firefly"
    assert r.details["has_c2pa"] is True
    assert "trainedalgorithmicmedia" in r.details["generator_markers"] and r.score == 1.0
    assert "can be stripped or forged" in r.summary
    plain = tmp_path / "plain.jpg"
    _save_jpeg(px, plain, 90)
    r0 = metadata(_subject(plain, px))
    assert not r0.details["has_c2pa"] and r0.score is None and "not evidence either way" in r0.summary


def test_gradcam_uses_the_model_explanation(tmp_path: Path) -> None:
    class FakeModel:  # test double for the Model.explain contract only (the scan tests use a real model file)
        def explain(self, face: np.ndarray) -> np.ndarray:
            h, w = face.shape[:2]
            heat = np.zeros((h, w), np.float32)
            heat[int(0.75 * h) :, :] = 1.0  # all evidence at the mouth
            return heat

    (r,) = run_face_evidence(["gradcam"], np.zeros((64, 64, 3), np.uint8), FakeModel())
    assert r.scope == "face" and r.error is None and "mouth" in r.summary and r.heatmap.shape == (64, 64)


def test_a_failing_analysis_becomes_an_error_result() -> None:
    class Broken:
        def explain(self, face: np.ndarray) -> np.ndarray:
            raise RuntimeError("boom")

    (r,) = run_face_evidence(["gradcam"], np.zeros((8, 8, 3), np.uint8), Broken())
    assert r.error == "RuntimeError: boom" and r.score is None


@pytest.mark.parametrize("name", FILE_ANALYSES)
def test_analyses_survive_tiny_and_grey_images(tmp_path: Path, name: str) -> None:
    px = np.full((20, 24, 3), 128, np.uint8)
    path = tmp_path / "tiny.png"
    Image.fromarray(px).save(path)
    (r,) = run_file_evidence([name], _subject(path, px, boxes=((2, 2, 10, 10),)))
    assert r.error is None, r.error


def _face_photo(seed: int = 5, side: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A 'photo' with a skin-toned face and its 5 landmarks where the alignment template puts them (margin 1.0)."""
    from detectors.inconsistency.regions import face_regions
    from forensics_core.faces.crops import canonical_landmarks

    lm = canonical_landmarks(side, 1.0)
    img = _photo(seed, side).astype(np.float32)
    head = face_regions((side, side), lm).rho <= 1.6
    skin = np.array([205.0, 150.0, 125.0]) + 0.25 * (img - img.mean((0, 1)))
    img[head] = skin[head]
    return np.clip(img, 0, 255).astype(np.uint8), lm


def _pasted(base: np.ndarray, lm: np.ndarray, fn) -> np.ndarray:
    """``base`` with its inner face (rho <= 1 of the face frame) replaced by ``fn(base)``."""
    from detectors.inconsistency.regions import face_regions

    inner = face_regions(base.shape[:2], lm).rho <= 1.0
    out = base.copy()
    out[inner] = fn(base)[inner]
    return out


def _face_subject(path: Path, pixels: np.ndarray, lm: np.ndarray, landmarks: bool = True) -> EvidenceSubject:
    box = (*(lm.min(0) - 30), *(lm.max(0) + 30))
    return EvidenceSubject(path=str(path), media_type="image", pixels=pixels, face_boxes=[box],
                           face_landmarks=[lm] if landmarks else [])  # fmt: skip


def test_surround_analyses_see_a_smoothed_face_and_map_it(tmp_path: Path) -> None:
    """A face resampled before it was pasted: noise and co-occurrences against the surround, and the map's
    mass inside the face, not around it."""
    import cv2

    from detectors.inconsistency.regions import face_regions

    base, lm = _face_photo()
    fake = _pasted(base, lm, lambda im: cv2.resize(cv2.resize(im, None, fx=0.4, fy=0.4), im.shape[1::-1]))
    path = tmp_path / "f.png"
    inner = face_regions(base.shape[:2], lm).rho <= 0.8
    for name in ("surround-noise", "cooccurrence"):
        (r_real,) = run_file_evidence([name], _face_subject(path, base, lm))
        (r_fake,) = run_file_evidence([name], _face_subject(path, fake, lm))
        assert r_real.error is None and r_fake.error is None, (r_real.error, r_fake.error)
        assert r_fake.score > r_real.score + 0.2, (name, r_real.score, r_fake.score)
        assert r_fake.heatmap.shape == base.shape[:2] and r_fake.heatmap[inner].mean() > r_real.heatmap[inner].mean()
    (r,) = run_file_evidence(["surround-noise"], _face_subject(path, fake, lm))
    assert r.details["faces"][0]["noise_ratio"] < 0.8 and "smoother" in r.summary
    # without landmarks the face's shape comes from its box: still a finding, from the same analysis
    (r_box,) = run_file_evidence(["surround-noise"], _face_subject(path, fake, lm, landmarks=False))
    assert r_box.error is None and r_box.score is not None


def test_blend_boundary_finds_a_colour_seam(tmp_path: Path) -> None:
    base, lm = _face_photo(6)
    shifted = _pasted(base, lm, lambda im: np.clip(im.astype(int) + [25, -5, -20], 0, 255).astype(np.uint8))
    path = tmp_path / "b.png"
    (r_real,) = run_file_evidence(["blend-boundary"], _face_subject(path, base, lm))
    (r_fake,) = run_file_evidence(["blend-boundary"], _face_subject(path, shifted, lm))
    assert r_fake.error is None and r_fake.score > r_real.score
    steps = r_fake.details["faces"][0]["steps"]
    assert max(steps["cb"]["step_vs_typical"], steps["cr"]["step_vs_typical"]) > 3
    assert 0.8 <= max(steps.items(), key=lambda kv: kv[1]["step_vs_typical"])[1]["at_rho"] <= 1.3  # at the seam


def test_jpeg_grid_sees_a_face_from_a_shifted_jpeg(tmp_path: Path) -> None:
    """A face cut from a JPEG whose grid is shifted by (3, 5) px against the host's, both then saved once more."""
    import io

    base, lm = _face_photo(7)
    shifted = np.roll(base, (3, 5), axis=(0, 1))
    buf = io.BytesIO()
    Image.fromarray(shifted).save(buf, "JPEG", quality=40)
    donor = np.roll(np.asarray(Image.open(buf).convert("RGB")), (-3, -5), axis=(0, 1))
    fake = _pasted(base, lm, lambda _: donor)
    path_real, path_fake = tmp_path / "r.jpg", tmp_path / "f.jpg"
    real_px, fake_px = _save_jpeg(base, path_real, 90), _save_jpeg(fake, path_fake, 90)
    (r_real,) = run_file_evidence(["jpeg-grid"], _face_subject(path_real, real_px, lm))
    (r_fake,) = run_file_evidence(["jpeg-grid"], _face_subject(path_fake, fake_px, lm))
    f_real, f_fake = r_real.details["faces"][0], r_fake.details["faces"][0]
    assert f_fake["face_windows_off_grid"] > f_real["face_windows_off_grid"] + 0.2
    assert r_fake.score >= r_real.score
    from forensics.evidence._common import real_scale
    from forensics.evidence.jpeg_grid import OFF_GRID_SCALE

    # on the scale of real photos the pasted face's grid stands out more than the untouched face's
    fake_grid = real_scale(f_fake["face_windows_off_grid"], *OFF_GRID_SCALE)
    assert fake_grid > real_scale(f_real["face_windows_off_grid"], *OFF_GRID_SCALE) and fake_grid > 0.2
    # pixels the scan downscaled have lost the file's grid: not checked rather than guessed
    sub = _face_subject(path_fake, fake_px, lm)
    sub.pixel_scale = 0.5
    (r_small,) = run_file_evidence(["jpeg-grid"], sub)
    assert r_small.score is None and r_small.details["checked"] is False


def test_scan_hands_the_detected_landmarks_to_file_analyses(tmp_path: Path, tiny_model: str, monkeypatch) -> None:
    """The surround analyses place the inner face, band and surround from the detector's 5 landmarks; a scan must
    pass them (in the analysed pixels' coordinates) instead of leaving the analyses to guess from the box."""
    from PIL import Image
    from skimage import data

    import forensics.scanning.scanner as S
    from forensics import scan

    seen: list[EvidenceSubject] = []

    def capture(names, subject):
        seen.append(subject)
        return []

    monkeypatch.setattr(S, "run_file_evidence", capture)
    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    (res,) = list(scan([str(path)], model=tiny_model, evidence="surround-noise"))
    assert res.faces and not res.no_face and len(seen) == 1
    (lm,) = seen[0].face_landmarks
    (box,) = seen[0].face_boxes
    assert lm.shape == (5, 2)
    assert all(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in lm)  # the landmarks of that face
