"""The README leaderboard, generated from the committed runs in ``benchmarks/results/`` (never typed by hand).

Each run folder there holds a ``results.json`` written by ``forensics bench run``; this module reads all of them and
builds one row per detector label:

- held-out AUC: mean over held-out families (``leave-one-family-out``) / upsamplers (``leave-one-upsampler-out``),
  clean images, each model tested on the one family it never saw;
- external set: AUC with its 95% interval, TPR at 1% FPR and ECE on the first cross-dataset test set (clean);
- robustness: AUC after JPEG q=50 and after downscale x0.5 (first robustness run);
- speed: images/s from the same runs, with the device.

``python -m benchmarks.leaderboard --readme README.md`` rewrites the block between ``<!-- leaderboard:start -->``
and ``<!-- leaderboard:end -->``; without ``--readme`` the table is printed. Each column names the run folder it
came from, so every number links to its command and environment (``report.md`` in that folder).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
import numpy as np

from forensics.errors import DataError, ForensicsError

START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"


def load_runs(results_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    runs = []
    for p in sorted(results_dir.glob("*/results.json")):
        try:
            runs.append((p.parent, json.loads(p.read_text(encoding="utf-8"))))
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}: invalid JSON ({exc.msg})") from None
    return runs


def _ok(c: dict[str, Any]) -> bool:
    return bool(c.get("metrics")) and c["perturbation"] == "none"


def _fmt(v: float | None, ci: list[float] | None = None) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"


def build_rows(runs: list[tuple[Path, dict[str, Any]]]) -> tuple[list[str], dict[str, dict[str, str]], list[str]]:
    """(columns, {detector: {column: text}}, sources) from every run; the first run of each kind wins."""
    cols: list[str] = []
    rows: dict[str, dict[str, str]] = defaultdict(dict)
    sources: list[str] = []

    def put(col: str, det: str, text: str) -> None:
        if col not in cols:
            cols.append(col)
        rows[det].setdefault(col, text)

    for folder, res in runs:
        proto, name = res.get("protocol"), folder.name
        cells = res.get("cells", [])
        used = False
        if proto in ("leave-one-family-out", "leave-one-upsampler-out"):
            key = "family" if proto.endswith("family-out") else "upsampler"
            by: dict[str, list[float]] = defaultdict(list)
            for c in cells:
                g = c["group"]
                if _ok(c) and g.get("held_out") == g.get("tested"):
                    by[c["detector"]].append(c["metrics"]["auc"])
            for det, aucs in by.items():
                put(f"held-out {key} AUC, mean of {len(aucs)} ({name})", det, f"{np.mean(aucs):.3f}")
                used = True
        elif proto == "cross-dataset":
            first = next((c for c in cells if _ok(c) and set(c["group"]) == {"dataset"}), None)
            if first:
                ds = first["group"]["dataset"]
                for c in cells:
                    if _ok(c) and c["group"] == {"dataset": ds}:
                        m = c["metrics"]
                        put(f"{ds} AUC ({name})", c["detector"], _fmt(m["auc"], m["ci"].get("auc")))
                        put(f"{ds} TPR@1%FPR", c["detector"], _fmt(m["tpr_at_fpr1"]))
                        put(f"{ds} ECE", c["detector"], _fmt(m.get("ece")))
                        used = True
        elif proto == "robustness":
            for pert, label in (("jpeg(q=50)", "AUC after JPEG q50"), ("downscale(s=0.5)", "AUC after downscale 0.5")):
                for c in cells:
                    if c["perturbation"] == pert and c.get("metrics") and set(c["group"]) == {"dataset"}:
                        put(f"{label} ({name})", c["detector"], _fmt(c["metrics"]["auc"]))
                        used = True
        for det, s in (res.get("speed") or {}).items():
            put("images/s (device)", det, f"{s['images_per_s']:.0f} ({s['device']})")
        if used:
            sources.append(name)
    return cols, dict(rows), sources


def render(results_dir: Path = DEFAULT_RESULTS) -> str:
    runs = load_runs(results_dir)
    if not runs:
        raise DataError(f"{results_dir}: no */results.json (run `forensics bench run ... --out {results_dir}/NAME`)")
    cols, rows, sources = build_rows(runs)
    lines = ["| detector | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for det in sorted(rows):
        lines.append(f"| {det} | " + " | ".join(rows[det].get(c, "-") for c in cols) + " |")
    rel = results_dir.name if results_dir == DEFAULT_RESULTS else str(results_dir)
    lines += ["", f"Generated by `python -m benchmarks.leaderboard` from {', '.join(f'`{rel}/{s}`' for s in sources)}"
              " (each folder's `report.md` has the command, environment and every interval)."]
    return "\n".join(lines)


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise DataError(f"{readme}: no '{START}' ... '{END}' block to replace")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


@click.command(epilog="Example: python -m benchmarks.leaderboard --readme README.md")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_RESULTS,
              show_default=True, help="Folder of benchmark run folders.")
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), help="Rewrite the leaderboard block here.")
def main(results_dir: Path, readme: Path | None) -> None:
    """Print (or write into README) the leaderboard table built from committed benchmark runs."""
    table = render(results_dir)
    if readme:
        update_readme(readme, table)
        click.echo(f"updated {readme}")
    else:
        click.echo(table)


def cli(argv: list[str] | None = None) -> int:
    try:
        main.main(args=argv, prog_name="python -m benchmarks.leaderboard", standalone_mode=False)
    except ForensicsError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(cli())
