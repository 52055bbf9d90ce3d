"""``forensics faces``: detect, align and extract faces from images and videos into a dataset directory.

Exit codes of ``faces extract``: 0 when every input was read (finding no face is not an error), 2 when at least
one input could not be read (each reported on stderr as one ``error: <file>: <cause>`` line while the batch goes
on) or on a usage error.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from forensics_core.clirun import RegistryChoice
from forensics_core.errors import UsageError

EXTRACT_EPILOG = (
    "Example: forensics faces extract photos/ clip.mp4 --out faces/ --size 224 --fps 2\n\n"
    "Exit codes: 0 = every input read (also when no face was found); 2 = some inputs failed (one 'error:' line "
    "each on stderr; the rest are still processed) or a usage error."
)


def _quiet(ctx: click.Context) -> bool:
    return bool(getattr(ctx.find_root().obj, "quiet", False))


def _slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:n] or "media"


@click.group(epilog="Example: forensics faces extract photo.jpg --out faces/")
def faces() -> None:
    """Detect, align and extract faces from images and videos."""


@faces.command("detectors", epilog="Example: forensics faces detectors")
def list_detectors() -> None:
    """List the registered face detectors."""
    from forensics_core.faces.detectors import FACE_DETECTORS

    for e in FACE_DETECTORS.entries():
        click.echo(f"{e.name:10s} {e.description}")


@faces.command("extract", epilog=EXTRACT_EPILOG)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: crops/ (PNG) and manifest.jsonl.")
@click.option("--size", default=224, show_default=True, help="Side of the aligned square crop in pixels.")
@click.option("--margin", default=0.3, show_default=True,
              help="Context around the 5-point template (0 = tight ArcFace framing).")
@click.option("--every", type=int, default=None, help="Videos: use every N-th frame (default: every frame).")
@click.option("--fps", type=float, default=None, help="Videos: sample F frames per second instead of --every.")
@click.option("--max-faces", type=int, default=None, help="Keep at most K faces per image / frame (most confident).")
@click.option("--detector", default="mtcnn", show_default=True,
              help="Face detector: mtcnn (landmarks) or opencv (Haar, approximate landmarks).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--min-prob", type=float, default=None, help="Detection threshold (default: the detector's own).")
@click.option("--label", type=RegistryChoice("forensics_core.dataset:LABELS"), default="real", show_default=True,
              help="Label written to the manifest rows.")
@click.pass_context
def extract(
    ctx: click.Context,
    inputs: tuple[Path, ...],
    out_dir: Path,
    size: int,
    margin: float,
    every: int | None,
    fps: float | None,
    max_faces: int | None,
    detector: str,
    device: str,
    min_prob: float | None,
    label: str,
) -> None:
    """Write aligned face crops (PNG) and manifest.jsonl for images and videos.

    INPUTS are files or directories (searched recursively for media extensions; the type of each file is decided
    from its bytes). Video frames are sampled with --every or --fps and faces are grouped into tracks. Each manifest
    row carries the crop path, source path and sha256, frame index, track id, box, landmarks and detection
    probability. Re-running into the same --out does not duplicate rows.
    """
    from forensics_core.dataset import ManifestRow, ManifestWriter
    from forensics_core.errors import ForensicsError
    from forensics_core.faces.detectors import get_face_detector
    from forensics_core.faces.extract import ExtractConfig, extract_faces
    from forensics_core.hashing import sha256_bytes
    from forensics_core.inputs import expand_paths

    if every is not None and fps is not None:
        raise UsageError("--every and --fps are mutually exclusive")
    cfg = ExtractConfig(size=size, margin=margin, every=every or 1, fps=fps, max_faces=max_faces)
    # the scan's input rules (folders sorted, hidden entries and non-media skipped, symlinks out of a folder refused)
    files = [Path(p) for p in expand_paths([str(i) for i in inputs])]
    if not files:
        raise UsageError(f"no media files found in {', '.join(map(str, inputs))}")
    det = get_face_detector(detector, device=device, **({"min_prob": min_prob} if min_prob is not None else {}))

    import cv2
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    n_faces = n_failed = n_videos = n_tracks = 0
    t0 = time.perf_counter()
    with (
        ManifestWriter(out_dir) as writer,
        Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=_quiet(ctx), transient=True,
        ) as bar,
    ):
        task = bar.add_task("faces", total=len(files))
        for path in files:
            bar.update(task, description=f"faces {n_faces} | {path.name[:30]}")
            tracks: set[int] = set()
            kind = ""
            try:
                for ef in extract_faces(path, det, cfg):
                    rel = f"crops/{_slug(path.stem)}-{ef.source_sha256[:12]}/f{ef.frame:06d}-t{ef.track:03d}.png"
                    tracks.add(ef.track)
                    kind = ef.kind
                    if rel in writer.done:
                        continue
                    dst = out_dir / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    ok, png = cv2.imencode(".png", cv2.cvtColor(ef.crop, cv2.COLOR_RGB2BGR))
                    if not ok:
                        raise ForensicsError(f"{dst}: PNG encoding failed")
                    dst.write_bytes(png.tobytes())
                    writer.write(
                        ManifestRow(
                            path=rel, label=label, sha256=sha256_bytes(png.tobytes()), source=str(path),
                            parent=ef.source_sha256, method="faces-extract",
                            extra={
                                "source_path": str(path), "source_sha256": ef.source_sha256, "kind": ef.kind,
                                "frame": ef.frame, "time_s": round(ef.time_s, 4), "track": ef.track,
                                **ef.face.to_dict(), "detector": detector, "size": size, "margin": margin,
                                "approx_landmarks": ef.face.approx_landmarks,
                            },
                        )
                    )
                    n_faces += 1
                if kind == "video":
                    n_videos += 1
                    n_tracks += len(tracks)
            except ForensicsError as exc:
                n_failed += 1
                console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            bar.advance(task)
    dt = time.perf_counter() - t0
    click.echo(
        f"{n_faces} face crops from {len(files) - n_failed}/{len(files)} files "
        f"({n_tracks} tracks in {n_videos} videos with faces) in {dt:.1f} s -> {out_dir / 'manifest.jsonl'}"
        + (f"; {n_failed} failed" if n_failed else "")
    )
    if n_failed:
        ctx.exit(2)
