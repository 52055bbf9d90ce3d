"""``forensics data``: import foreign face sets as normalised datasets and summarise datasets.

Exit codes of ``data import``: 0 when every item was imported (or skipped as already done / as a video), 2 when
some items failed (each reported as one ``error:`` line on stderr; the import still finishes) or on a usage error.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import click

from forensics_core.clirun import RegistryChoice
from forensics_core.errors import UsageError

IMPORT_EPILOG = (
    "Example: forensics data import ../shared/data --layout labels-csv --out /tmp/ds --align --size 128 "
    "--jpeg-quality 90\n\n"
    "Exit codes: 0 = all items imported or skipped; 2 = some items failed (one 'error:' line each on stderr) or a "
    "usage error. A second run into the same --out resumes: items already in its manifest are skipped."
)


def _parse_label_map(pairs: tuple[str, ...]) -> dict[str, str]:
    from forensics_core.dataset import LABELS

    if not pairs:
        return {label: label for label in LABELS}
    out: dict[str, str] = {}
    for p in pairs:
        folder, sep, label = p.partition("=")
        if not sep or label not in LABELS or not folder:
            raise UsageError(f"--label-map {p!r}: expected FOLDER=real or FOLDER=fake")
        out[folder] = label
    return out


@click.group(epilog="Example: forensics data info /tmp/ds")
def data() -> None:
    """Import, normalise and inspect datasets (a directory plus manifest.jsonl)."""


@data.command("layouts", epilog="Example: forensics data layouts")
def layouts() -> None:
    """List the import layouts."""
    from forensics_core.importers import LAYOUTS

    for e in LAYOUTS.entries():
        click.echo(f"{e.name:12s} {e.description}")


@data.command("import", epilog=IMPORT_EPILOG)
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--layout", default="labels-csv", show_default=True, help="How SRC is organised (see 'data layouts').")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset directory to write (created; resumed when it holds a manifest).")
@click.option("--align/--no-align", default=False, show_default=True,
              help="Align each image by its MTCNN landmarks (falls back to a centre crop when no face is found).")
@click.option("--size", default=224, show_default=True, help="Output side in pixels (square).")
@click.option("--margin", default=0.3, show_default=True, help="Context around the face template when aligning.")
@click.option("--jpeg-quality", default=90, show_default=True, help="JPEG quality of every output image.")
@click.option("--store", type=RegistryChoice("forensics_core.importers:STORES"), default="aligned", show_default=True,
              help="aligned: the face crop as JPEG; source: the uncropped face region as lossless PNG plus its "
              "landmarks, so training can give it a delivery history before cropping (detector train --delivery).")
@click.option("--workers", default=1, show_default=True, help="Worker processes (each runs its own detector).")
@click.option("--label-map", multiple=True, metavar="FOLDER=LABEL",
              help="'folders' layout: class folder -> real|fake (repeatable; default real=real, fake=fake).")
@click.option("--labels-csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="'labels-csv' layout: labels file (default SRC/labels.csv).")
@click.option("--val-fraction", default=0.1, show_default=True,
              help="Items outside a train/val/test/crossval folder get a hash-based val split of this size.")
@click.option("--min-prob", default=0.9, show_default=True, help="MTCNN probability needed to align on a face.")
@click.pass_context
def import_(
    ctx: click.Context,
    src: Path,
    layout: str,
    out_dir: Path,
    align: bool,
    size: int,
    margin: float,
    jpeg_quality: int,
    store: str,
    workers: int,
    label_map: tuple[str, ...],
    labels_csv: str | None,
    val_fraction: float,
    min_prob: float,
) -> None:
    """Turn the foreign set SRC into a normalised dataset in --out.

    Every item of every class goes through the same pipeline: decode, align by the face landmarks (--align) or
    centre-crop square, resize to --size, re-encode as JPEG at --jpeg-quality, so format, watermark and framing
    differences between classes cannot be learned as shortcuts. Videos are skipped (counted). Output names are
    derived from a hash of the source path; 'parent' is the source file's sha256.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from forensics_core.importers import LayoutOptions, NormaliseConfig, import_dataset

    if workers < 1:
        raise UsageError(f"--workers {workers}: must be >= 1")
    if not 0 <= val_fraction < 1:
        raise UsageError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    norm = NormaliseConfig(
        size=size, align=align, margin=margin, jpeg_quality=jpeg_quality, min_prob=min_prob, store=store
    )
    opts = LayoutOptions(val_fraction=val_fraction, label_map=_parse_label_map(label_map), labels_csv=labels_csv)
    quiet = bool(getattr(ctx.find_root().obj, "quiet", False))
    console = Console(stderr=True)
    t0 = time.perf_counter()
    with Progress(
        TextColumn("import"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, disable=quiet,
    ) as bar:
        task = bar.add_task("import", total=None)

        def on_start(todo: int, skipped: int) -> None:
            bar.update(task, total=todo)
            if skipped:
                console.print(f"resuming: {skipped} items already in {out_dir / 'manifest.jsonl'} are skipped")

        rep = import_dataset(
            src, out_dir, layout=layout, norm=norm, opts=opts, workers=workers,
            on_error=lambda msg: console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True),
            progress=lambda n, _: bar.advance(task, n),
            on_start=on_start,
        )
    dt = time.perf_counter() - t0
    click.echo(
        f"{rep.total} items: {rep.written} written ({rep.aligned} aligned, {rep.written - rep.aligned} centre-crop), "
        f"{rep.skipped_done} already done, {rep.skipped_video} videos skipped, {rep.failed} failed "
        f"in {dt:.1f} s -> {out_dir / 'manifest.jsonl'}"
    )
    if rep.failed:
        ctx.exit(2)


STAGE_EPILOG = (
    "Example: git clone https://github.com/djbielejeski/Stable-Diffusion-Regularization-Images-blonde_woman "
    "src/djbielejeski+Stable-Diffusion-Regularization-Images-blonde_woman (and the other repositories of the list), "
    "then: forensics data stage sd-regularisation --from src --out staged && forensics data import staged "
    "--layout labels-csv --out ds --align --size 128 --store source\n\n"
    "Exit codes: 0 = every file staged with its pinned md5; 2 = some files missing or changed (one 'error:' line "
    "each on stderr; the others are staged) or a usage error."
)


@data.command("stage", epilog=STAGE_EPILOG)
@click.argument("source_list")
@click.option("--from", "roots", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="A git checkout or mirror of a listed repository, or a folder holding them as OWNER+NAME, "
              "OWNER/NAME or NAME (repeatable).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Staging folder: the files at their listed paths plus labels.csv (resumable).")
@click.pass_context
def stage_(ctx: click.Context, source_list: str, roots: tuple[str, ...], out_dir: Path) -> None:
    """Copy the files of a pinned SOURCE_LIST out of git checkouts and verify every md5.

    SOURCE_LIST is a CSV (path, binary, label, set, source_repo, commit, source_path, md5, bytes) or the name of
    one shipped in forensics/assets/sources (e.g. sd-regularisation). The staged folder has labels.csv in the
    ../shared/data format, for 'forensics data import --layout labels-csv'. Nothing is downloaded.
    """
    from rich.console import Console

    from forensics_core.sources import read_source_list, stage

    console = Console(stderr=True)
    rows = read_source_list(source_list)
    rep = stage(rows, list(roots), out_dir,
                on_error=lambda msg: console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True))
    click.echo(f"{rep.total} files: {rep.written} staged, {rep.already} already in place, {rep.failed} failed "
               f"-> {out_dir / 'labels.csv'}")
    if rep.failed:
        ctx.exit(2)


@data.command("pin", epilog="Example: forensics data pin src/sd-repo --repo OWNER/NAME --commit SHA --folder "
              "blonde_woman --set diffusion_faces/sd14-blonde-woman_OWNER --binary fake --label 'fake:SD 1.4' "
              ">> my-sources.csv")
@click.argument("checkout", type=click.Path(exists=True, file_okay=False))
@click.option("--repo", required=True, help="OWNER/NAME of the repository CHECKOUT is a copy of.")
@click.option("--commit", required=True, help="The commit to pin (40 hex digits).")
@click.option("--folder", required=True, help="Folder of that commit whose images are listed.")
@click.option("--set", "set_name", required=True, help="Set folder the files are staged under (TOP/NAME_UPLOADER).")
@click.option("--binary", type=RegistryChoice("forensics_core.dataset:LABELS"), required=True,
              help="Class of every listed file.")
@click.option("--label", required=True, help="What the files are, in words (generator, prompt, origin).")
@click.option("--header/--no-header", default=True, show_default=True, help="Print the CSV header first.")
def pin_(checkout: str, repo: str, commit: str, folder: str, set_name: str, binary: str, label: str,
         header: bool) -> None:
    """Print source-list rows (with md5 and size) for every image under --folder at --commit."""
    import csv
    import sys

    from forensics_core.sources import COLUMNS, pin

    rows = pin(checkout, repo, commit, folder, set_name, binary, label)
    w = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        w.writeheader()
    for r in rows:
        w.writerow(asdict(r))


@data.command("info", epilog="Example: forensics data info /tmp/ds --json")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def info(root: Path, as_json: bool) -> None:
    """Count the items of a dataset by label, family, source, split and method."""
    from collections import Counter

    from forensics_core.dataset import read_manifest, summarize

    rows = read_manifest(root)
    s = summarize(rows)
    label_split = Counter(f"{r.label}/{r.split or '-'}" for r in rows)
    aligned = Counter(str(r.extra["aligned"]).lower() for r in rows if "aligned" in r.extra)
    d = asdict(s)
    d["by_label_split"] = dict(sorted(label_split.items()))
    if aligned:
        d["by_aligned"] = dict(sorted(aligned.items()))
    if as_json:
        click.echo(json.dumps(d, sort_keys=True))
        return
    click.echo(f"{root}: {s.n} items")
    for key, title in [("by_label", "label"), ("by_family", "family"), ("by_source", "source"),
                       ("by_split", "split"), ("by_label_split", "label/split"), ("by_method", "method"),
                       ("by_aligned", "aligned")]:
        if key not in d:
            continue
        click.echo(f"\n{title}:")
        width = max(len(k) for k in d[key]) if d[key] else 0
        for k, v in d[key].items():
            click.echo(f"  {k:<{width}}  {v:>7}")
