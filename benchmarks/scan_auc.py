"""AUC (with intervals) of a ``forensics scan --jsonl`` output, given which inputs are fake.

This measures the product end to end (decode, face detection and alignment, model, calibration, aggregation) rather
than the model on pre-cropped faces, which is what a README "scan" number must mean. Labels come from rules, never
from the scan itself:

- ``--fake GLOB`` / ``--real GLOB`` (repeatable): shell patterns matched against each record's path
  (``*/gan_faces/*``); a path matching both or neither is reported and left out;
- ``--labels labels.csv``: a CSV with ``path`` and ``binary`` (``real`` / ``fake``) or ``label`` columns (the
  ``../shared/data/labels.csv`` layout); paths are matched by suffix, so absolute and relative paths both work;
- ``--manifest DIR``: a dataset folder; records are matched by sha256 (or by path) against its manifest.

Inputs that scan could not score (``status: error`` or no probability) are counted and listed, not silently dropped.
Accuracy is taken from scan's own verdicts (the model's stored threshold preset), never from a threshold fitted here.

Example::

    forensics scan ../shared/data/gan_faces/tpdne-stylegan2_bhunakit/crossval \\
        ../shared/data/real_faces/ffhq128_bhunakit/crossval --jsonl /tmp/scan.jsonl
    python -m benchmarks.scan_auc /tmp/scan.jsonl --fake '*/gan_faces/*' --real '*/real_faces/*'
"""

from __future__ import annotations

import csv
import fnmatch
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np

from benchmarks.metrics import evaluate_scores
from forensics_core.clirun import run_click
from forensics_core.errors import DataError, UsageError


@dataclass
class ScanAUC:
    n_records: int
    n_real: int
    n_fake: int
    n_unlabelled: int
    n_unscored: int
    auc: float
    auc_ci: tuple[float, float]
    ap: float
    tpr_at_fpr1: float
    ece: float | None
    accuracy_at_verdict: float | None
    threshold: dict = field(default_factory=dict)
    unscored: list[str] = field(default_factory=list)


def read_records(path: Path) -> list[dict]:
    recs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):  # a torn last line from a killed scan
                break
            raise DataError(f"{path}:{i}: invalid JSON") from None
    return recs


def labels_from_globs(records: list[dict], fake: list[str], real: list[str]) -> dict[str, int]:
    out = {}
    for r in records:
        p = r["path"]
        is_f = any(fnmatch.fnmatch(p, g) for g in fake)
        is_r = any(fnmatch.fnmatch(p, g) for g in real)
        if is_f != is_r:
            out[p] = int(is_f)
    return out


def labels_from_csv(records: list[dict], csv_path: Path) -> dict[str, int]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    table = {}
    for row in rows:
        lab = (row.get("binary") or row.get("label") or "").strip().lower()
        if lab in ("real", "fake"):
            table[row["path"].strip().lstrip("./")] = int(lab == "fake")
    out = {}
    for r in records:
        p = r["path"].replace("\\", "/")
        for key, y in table.items():
            if p.endswith(key):
                out[r["path"]] = y
                break
    return out


def labels_from_manifest(records: list[dict], root: Path) -> dict[str, int]:
    from forensics_core.dataset import read_manifest

    rows = read_manifest(root)
    by_sha = {r.sha256: r.y for r in rows if r.sha256}
    by_path = {str((root / r.path).resolve()): r.y for r in rows}
    out = {}
    for r in records:
        y = by_sha.get(r.get("sha256", ""))
        if y is None:
            y = by_path.get(str(Path(r["path"]).resolve()))
        if y is not None:
            out[r["path"]] = y
    return out


def scan_auc(records: list[dict], labels: dict[str, int], n_boot: int = 1000, seed: int = 0) -> ScanAUC:
    scored, unscored = [], []
    for r in records:
        if r["path"] not in labels:
            continue
        if r.get("status", "ok") != "ok" or r.get("fake_probability") is None:
            unscored.append(r["path"])
            continue
        scored.append((labels[r["path"]], float(r["fake_probability"]), r.get("verdict")))
    if not scored:
        raise DataError("no labelled, scored records (check the --fake/--real rules against the paths in the JSONL)")
    y = np.array([s[0] for s in scored])
    p = np.array([s[1] for s in scored])
    try:
        rep = evaluate_scores(y, p, p, n_boot=n_boot, seed=seed)
    except ValueError as exc:
        raise DataError(f"scan AUC: {exc} ({int((y == 0).sum())} real, {int(y.sum())} fake labelled)") from None
    verdicts = [s[2] for s in scored]
    acc = None
    if all(v in ("flagged", "not_flagged") for v in verdicts):
        acc = float(np.mean([(v == "flagged") == bool(t) for v, t in zip(verdicts, y)]))
    thr = next((r.get("threshold") for r in records if r.get("threshold")), {}) or {}
    return ScanAUC(
        n_records=len(records), n_real=int((y == 0).sum()), n_fake=int(y.sum()),
        n_unlabelled=sum(r["path"] not in labels for r in records), n_unscored=len(unscored),
        auc=rep.auc, auc_ci=tuple(rep.ci.get("auc", (rep.auc, rep.auc))), ap=rep.ap, tpr_at_fpr1=rep.tpr_at_fpr1,
        ece=rep.ece, accuracy_at_verdict=acc, threshold=thr, unscored=unscored[:50],
    )  # fmt: skip


@click.command(
    epilog="Example: python -m benchmarks.scan_auc scan.jsonl --fake '*/gan_faces/*' --real '*/real_faces/*'",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("jsonl", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fake", multiple=True, help="Glob matched against record paths: these inputs are fake.")
@click.option("--real", multiple=True, help="Glob matched against record paths: these inputs are real.")
@click.option("--labels", "labels_csv", type=click.Path(dir_okay=False, path_type=Path), help="CSV with path,binary.")
@click.option("--manifest", type=click.Path(file_okay=False, path_type=Path), help="Dataset folder (manifest).")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap resamples for the interval.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def main(jsonl: Path, fake: tuple[str, ...], real: tuple[str, ...], labels_csv: Path | None, manifest: Path | None,
         bootstrap: int, as_json: bool) -> None:
    """AUC of a `forensics scan --jsonl` output with labels from path rules, a labels CSV or a dataset manifest."""
    records = read_records(jsonl)
    if labels_csv:
        labels = labels_from_csv(records, labels_csv)
    elif manifest:
        labels = labels_from_manifest(records, manifest)
    elif fake or real:
        if not (fake and real):
            raise UsageError("give both --fake and --real patterns (or --labels / --manifest)")
        labels = labels_from_globs(records, list(fake), list(real))
    else:
        raise UsageError("say which inputs are fake: --fake/--real globs, --labels CSV or --manifest DIR")
    res = scan_auc(records, labels, n_boot=bootstrap)
    if as_json:
        click.echo(json.dumps(asdict(res), indent=1))
        return
    lo, hi = res.auc_ci
    acc = "-" if res.accuracy_at_verdict is None else f"{res.accuracy_at_verdict:.3f}"
    click.echo(
        f"{jsonl}: {res.n_real} real / {res.n_fake} fake scored ({res.n_unscored} unscored, "
        f"{res.n_unlabelled} unlabelled)\nAUC {res.auc:.4f} [{lo:.4f}, {hi:.4f}]  AP {res.ap:.4f}  "
        f"TPR@1%FPR {res.tpr_at_fpr1:.4f}  ECE {res.ece:.4f}  accuracy at scan verdict {acc} "
        f"(threshold {res.threshold or '-'})"
    )


def cli(argv: list[str] | None = None) -> int:
    return run_click(main, argv, "python -m benchmarks.scan_auc")


if __name__ == "__main__":
    sys.exit(cli())
