"""Results as data, then rendering: ``results.json`` -> Markdown table + PNG plots.

:func:`build_results` is the only place metrics are computed (from the scores a run wrote); :func:`write_report`
renders what is in ``results.json`` and never computes, so ``forensics bench report DIR`` re-renders a run (new
plot style, new table) without touching a model. Plots use matplotlib's Agg backend (no display needed):

- ``roc.png``: ROC curves per detector, one curve per held-out family (leave-one-out) or per test set.
- ``robustness_<perturbation>.png``: AUC with its 95% interval against the perturbation's level (JPEG quality,
  downscale factor, blur sigma...), one line per detector, the clean AUC dashed.
- ``reliability.png``: reliability diagram per detector (clean cells pooled), with ECE in the legend.
- ``loo_heatmap.png``: leave-one-out AUC matrix per detector, trained-without (rows) x tested-on (columns).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.metrics import (
    MIN_BOOT,
    MIN_REALS_FPR01,
    accuracy_at,
    balanced_accuracy_at,
    bootstrap_ci,
    evaluate_scores,
    roc_curve,
)
from benchmarks.perturbations import parse_perturbation
from benchmarks.protocols import whole_set
from forensics_core.errors import DataError

if TYPE_CHECKING:
    from benchmarks.config import BenchConfig, MetricsConfig
    from benchmarks.runner import CellScores

RESULTS = "results.json"
REPORT = "report.md"
ROC_POINTS = 200
RELIABILITY_BINS = 10


# -- computing (once, at the end of a run) -----------------------------------------------------------------------


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = RELIABILITY_BINS) -> dict[str, list[float]]:
    """Counts and sums per equal-width bin, so bins from several cells can be pooled exactly when plotting."""
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return {
        "count": np.bincount(idx, minlength=n_bins).astype(int).tolist(),
        "sum_p": np.bincount(idx, weights=p, minlength=n_bins).tolist(),
        "sum_y": np.bincount(idx, weights=y.astype(float), minlength=n_bins).tolist(),
    }


def _thin(fpr: np.ndarray, tpr: np.ndarray, n: int = ROC_POINTS) -> dict[str, list[float]]:
    if fpr.size > n:
        keep = np.unique(np.r_[np.linspace(0, fpr.size - 1, n).round().astype(int), fpr.size - 1])
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def cell_metrics(y: np.ndarray, p: np.ndarray, thresholds: dict[str, float], m: MetricsConfig) -> dict[str, Any]:
    """Every metric of one cell with bootstrap intervals; accuracies only at the model's stored presets."""
    presets = {k: thresholds[k] for k in m.presets if k in thresholds}
    alpha = 1 - m.ci
    rep = evaluate_scores(y, p, p, thresholds=presets, n_boot=m.bootstrap, seed=m.seed).to_dict()
    rep["ci"] = {k: list(v) for k, v in rep["ci"].items()}
    if m.bootstrap and alpha != 0.05:  # evaluate_scores reports 95%; recompute the headline at the asked level
        rep["ci"]["auc"] = list(bootstrap_ci(_auc, y, p, n_boot=m.bootstrap, seed=m.seed, alpha=alpha))
    for name, t in presets.items():
        if m.bootstrap:
            rep["ci"][f"accuracy@{name}"] = list(
                bootstrap_ci(lambda a, b, t=t: accuracy_at(a, b, t), y, p, n_boot=m.bootstrap, seed=m.seed, alpha=alpha)
            )
            rep["ci"][f"balanced_accuracy@{name}"] = list(
                bootstrap_ci(
                    lambda a, b, t=t: balanced_accuracy_at(a, b, t), y, p, n_boot=m.bootstrap, seed=m.seed, alpha=alpha
                )
            )
    rep["thresholds"] = presets
    return rep


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from benchmarks.metrics import roc_auc

    return roc_auc(y, p)


def build_results(
    cfg: BenchConfig,
    scored: Iterable[CellScores],
    models: dict[str, dict[str, Any]],
    speed: dict[str, dict[str, Any]],
    run_info: dict[str, Any],
) -> dict[str, Any]:
    from benchmarks.protocols import get_protocol
    from benchmarks.runner import RESULTS_VERSION, model_key

    protocol = get_protocol(cfg.protocol)
    cells: list[dict[str, Any]] = []
    for cs in scored:
        pert = parse_perturbation(cs.cell.perturbation)
        key = model_key(cs.cell)
        entry: dict[str, Any] = {
            "id": cs.cell.id,
            "detector": cs.cell.detector,
            "level": cs.level,
            "group": cs.cell.group,
            "perturbation": pert.key,
            "perturbation_family": pert.family,
            "perturbation_level": pert.level,
            "model": key,
            "model_sha256": models[key]["sha256"],
            "n_real": int((cs.y == 0).sum()),
            "n_fake": int((cs.y == 1).sum()),
            "n_errors": len(cs.errors),
        }
        own = protocol.cell_metrics({"y": cs.y, "p": cs.p, "extra": cs.extra, "level": cs.level},
                                    models[key]["thresholds"], cfg.metrics)  # fmt: skip
        if own is not None:  # a protocol with its own measure (localisation): no ROC of P(fake) to draw
            entry["metrics"] = own
            cells.append(entry)
            continue
        try:
            entry["metrics"] = cell_metrics(cs.y, cs.p, models[key]["thresholds"], cfg.metrics)
            fpr, tpr, _ = roc_curve(cs.y, cs.p)
            entry["roc"] = _thin(fpr, tpr)
            entry["reliability"] = reliability_bins(cs.y, cs.p)
        except ValueError as exc:  # e.g. every fake failed to decode: say so instead of inventing a number
            entry["metrics"] = None
            entry["note"] = str(exc)
        cells.append(entry)
    return {
        "version": RESULTS_VERSION,
        "benchmark": cfg.name,
        "protocol": cfg.protocol,
        "config_file": str(cfg.source),
        "config": cfg.raw,
        "metrics_config": {"presets": cfg.metrics.presets, "bootstrap": cfg.metrics.bootstrap, "ci": cfg.metrics.ci},
        "run": run_info,
        "models": models,
        "speed": speed,
        "cells": cells,
    }


def recompute_metrics(run_dir: str | Path, bootstrap: int, command: str = "") -> dict[str, Any]:
    """Every cell's metrics again from the scores the run committed (``OUT/cells``) with ``bootstrap`` resamples:
    no model, no data, no scoring. Why: a run made with too few resamples is brought up to the reporting rule
    without re-scoring thousands of images; ``results.json`` records that (and how) its intervals were recomputed."""
    from benchmarks.config import MetricsConfig
    from benchmarks.protocols import get_protocol

    run_dir = Path(run_dir)
    results = load_results(run_dir)
    protocol = get_protocol(results["protocol"])
    scores: dict[tuple[str, str], dict[str, Any]] = {}
    for f in sorted((run_dir / "cells").glob("*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        scores[(d["id"], d["level"])] = d
    given = dict((results.get("config") or {}).get("metrics") or {})
    m = MetricsConfig(**{**given, "bootstrap": int(bootstrap)})
    for entry in results["cells"]:
        if not entry.get("metrics"):
            continue
        d = scores.get((entry["id"], entry["level"]))
        if d is None:
            raise DataError(f"{run_dir}: no cells/ scores for cell {entry['id']} ({entry['level']})")
        thresholds = results["models"][entry["model"]]["thresholds"]
        y, p = np.asarray(d["y"]), np.asarray(d["p"], dtype=np.float64)
        own = protocol.cell_metrics({"y": y, "p": p, "extra": d.get("extra") or {}, "level": d["level"]}, thresholds, m)
        entry["metrics"] = own if own is not None else cell_metrics(y, p, thresholds, m)
    results["metrics_config"]["bootstrap"] = m.bootstrap
    results["recomputed"] = {"bootstrap": m.bootstrap, "from": "cells/", "command": command}
    return results


# -- rendering (never computes metrics) ---------------------------------------------------------------------------


def load_results(run_dir: str | Path) -> dict[str, Any]:
    p = Path(run_dir) / RESULTS
    if not p.is_file():
        raise DataError(f"{run_dir}: no {RESULTS} (not a benchmark run folder, or the run did not finish)")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: invalid JSON ({exc.msg})") from None


def fmt_ci(m: dict[str, Any] | None, name: str, digits: int = 3, n: str = "") -> str:
    """``0.973 [0.961, 0.982]`` (value and its interval), ``... (n=real/fake)`` when ``n`` is given; ``-`` when
    absent. Tables whose rows carry a real/fake column leave ``n`` out."""
    if not m:
        return "-"
    if "@" in name:
        kind, preset = name.split("@")
        v = (m.get(kind) or {}).get(preset)
    else:
        v = m.get(name)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    ci = (m.get("ci") or {}).get(name)
    s = f"{v:.{digits}f}"
    if not ci:
        return s
    s = f"{s} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return f"{s} (n={n})" if n else s


def n_of(cell: dict[str, Any] | None) -> str:
    return f"{cell['n_real']}/{cell['n_fake']}" if cell else ""


def fmt_tpr01(cell: dict[str, Any]) -> str:
    """TPR at 0.1% FPR, or ``-`` when the cell has fewer than :data:`MIN_REALS_FPR01` reals."""
    m = cell.get("metrics")
    if not m or cell["n_real"] < MIN_REALS_FPR01:
        return "-"
    return f"{m['tpr_at_fpr01']:.3f}"


def _group_text(cell: dict[str, Any]) -> str:
    g = cell["group"]
    if "held_out" in g:
        return f"without {g['held_out']} -> on {g['tested']}"
    hidden = ("families", "components", "key")  # described in the held-out groups table instead
    return ", ".join(f"{k}={v}" if k != "dataset" else str(v) for k, v in g.items() if k not in hidden)


def _few_resamples(results: dict[str, Any]) -> list[str]:
    n = results["metrics_config"]["bootstrap"]
    note = f"- **{n} resamples: fewer than the {MIN_BOOT} a reported interval needs; rerun before quoting intervals.**"
    return [note] if n < MIN_BOOT else []


def _relation_name(results: dict[str, Any]) -> str:
    """What the test sets are to the training data (``same-source held-out`` / ``external``), for scoring
    protocols that declare it; "" otherwise."""
    from benchmarks.protocols import PROTOCOLS

    obj = PROTOCOLS.get(results["protocol"]).obj if results["protocol"] in PROTOCOLS else None
    return obj.relation(results) if obj is not None and hasattr(obj, "relation") else ""


def _relation_title(results: dict[str, Any]) -> str:
    rel = _relation_name(results)
    return f"; {rel} test sets" if rel else ""


def _relation(results: dict[str, Any]) -> list[str]:
    rel = _relation_name(results)
    if not rel:
        return []
    why = {
        "same-source held-out": "a split no model trained on, of a source their training data came from; not an "
        "external dataset",
        "external": "a source none of the models trained on",
    }[rel]
    return [f"- test sets: **{rel}**: {why}."]


def is_primary(cell: dict[str, Any]) -> bool:
    """The cells a summary shows: clean, and for leave-one-out the held-out diagonal."""
    g = cell["group"]
    return cell["perturbation"] == "none" and ("held_out" not in g or g["held_out"] == g["tested"])


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    run = results.get("run", {})
    env = run.get("environment", {})
    presets = results["metrics_config"]["presets"]
    lines = [
        f"# Benchmark `{results['benchmark']}` ({results['protocol']} protocol{_relation_title(results)})",
        "",
        f"- command: `{run.get('command') or 'forensics bench run ' + results['config_file']}` at commit "
        f"`{run.get('commit', 'unknown')}`",
        f"- device: {run.get('device')}; CPU: {env.get('cpu')} x{env.get('cpu_count')}; GPU: {env.get('cuda') or '-'}; "
        f"torch {env.get('torch')}; python {env.get('python')}; deepfake-forensics {env.get('deepfake_forensics')}",
        f"- started {run.get('started')}, {run.get('seconds')} s; cache: {run.get('cache', {}).get('hits', 0)} hits, "
        f"{run.get('cache', {}).get('computed', 0)} scores computed; {run.get('n_errors', 0)} unreadable items",
        f"- intervals: {int(100 * results['metrics_config']['ci'])}% stratified bootstrap "
        f"({results['metrics_config']['bootstrap']} resamples), n = real/fake items beside each; accuracies at the "
        f"model's stored presets ({', '.join(presets)}), never at a threshold fitted on the test set; TPR@0.1%FPR "
        f"only where a cell has >= {MIN_REALS_FPR01} reals (else -).",
        *_few_resamples(results),
        *([f"- intervals recomputed from the committed scores (`cells/`) by `{results['recomputed']['command']}`."]
          if results.get("recomputed") else []),
        *_relation(results),
        *_models(results),
        "",
    ]
    lines += _summary(results)
    lines += _localisation(results)
    if not any(c["level"] != "pixel" for c in results["cells"]):
        return "\n".join(lines) + "\n"
    lines += ["## All cells", ""]
    head = ["detector", "test set", "perturbation", "level", "real/fake", "AUC", "AP", "EER", "TPR@1%FPR",
            "TPR@0.1%FPR", "ECE", "Brier"]
    head += [f"acc@{p}" for p in presets] + [f"bal-acc@{p}" for p in presets]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in results["cells"]:
        if c["level"] == "pixel":
            continue
        m = c.get("metrics")
        row = [c["detector"], _group_text(c), c["perturbation"], c["level"], f"{c['n_real']}/{c['n_fake']}"]
        row += [fmt_ci(m, k) for k in ("auc", "ap", "eer", "tpr_at_fpr1")]
        row += [fmt_tpr01(c), fmt_ci(m, "ece"), fmt_ci(m, "brier")]
        row += [fmt_ci(m, f"accuracy@{p}") for p in presets] + [fmt_ci(m, f"balanced_accuracy@{p}") for p in presets]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Speed (measured in this run)", ""]
    lines += ["| detector | device | batch | images/s | ms p50 (batch 1) | ms p95 (batch 1) | peak RSS MiB | GPU MiB |",
              "|---|---|---|---|---|---|---|---|"]
    for det, s in results.get("speed", {}).items():
        gpu = f"{s['gpu_peak_mb']:.0f}" if s.get("gpu_peak_mb") is not None else "-"
        lines.append(f"| {det} | {s['device']} | {s['batch']} | {s['images_per_s']:.1f} | {s['ms_p50']:.2f} | "
                     f"{s['ms_p95']:.2f} | {s['peak_rss_mb']:.0f} | {gpu} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _localisation(results: dict[str, Any]) -> list[str]:
    """Pixel-level cells (``localisation`` protocol): each map's mean per-image pixel AUC and IoU against the
    masks, beside what the face-shape prior alone scores on the same images."""
    cells = [c for c in results["cells"] if c["level"] == "pixel" and c.get("metrics")]
    if not cells:
        return []
    out = ["## Localisation (per image, in each model's crop; n = edited images with ground truth)", "",
           "| detector | test set | perturbation | n | pixel AUC | IoU | face-prior pixel AUC | face-prior IoU |",
           "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        m = c["metrics"]
        out.append(f"| {c['detector']} | {_group_text(c)} | {c['perturbation']} | {m['n']} | "
                   f"{fmt_ci(m, 'pixel_auc')} | {fmt_ci(m, 'iou')} | {fmt_ci(m, 'prior_pixel_auc')} | "
                   f"{fmt_ci(m, 'prior_iou')} |")
    return out + [""]


def _models(results: dict[str, Any]) -> list[str]:
    """Which exact model each detector label is (weights sha256), for protocols scoring model files."""
    from benchmarks.protocols import PROTOCOLS

    if results["protocol"] in PROTOCOLS and PROTOCOLS.get(results["protocol"]).obj.trains:
        return ["- models: one per held-out cell, trained by this run (hashes in results.json)."]
    seen = {c["detector"]: c.get("model_sha256", "") for c in results["cells"]}
    return [f"- models: {', '.join(f'{d} = weights sha256 {h[:12]}' for d, h in seen.items() if h)}."] if seen else []


def _summary(results: dict[str, Any]) -> list[str]:
    cells = [c for c in results["cells"] if c.get("metrics")]
    dets = list(dict.fromkeys(c["detector"] for c in results["cells"]))
    out: list[str] = []
    loo = [c for c in cells if "held_out" in c["group"] and is_primary(c)]
    if loo:
        key = loo[0]["group"].get("key", "family")
        held = sorted({c["group"]["held_out"] for c in loo})
        described = {c["group"]["held_out"]: c["group"] for c in loo if "families" in c["group"]}
        if described:
            out += [f"## Held-out {key}s", "", "Families that share a component are held out together; reals "
                    "join every training and test set.", "", f"| {key} | families | shared components |",
                    "|---|---|---|"]
            out += [f"| {h} | {g['families']} | {g.get('components') or '-'} |" for h, g in described.items()]
            out.append("")
        out += [f"## Held-out {key} AUC (trained without it; n = real/fake test items)", "",
                "| held out | " + " | ".join(dets) + " |", "|---|" + "---|" * len(dets)]
        by = {(c["detector"], c["group"]["held_out"]): c for c in loo}
        for h in held:
            row = [fmt_ci((by.get((d, h)) or {}).get("metrics"), "auc", n=n_of(by.get((d, h)))) for d in dets]
            out.append(f"| {h} | " + " | ".join(row) + " |")
        means = [np.mean([by[(d, h)]["metrics"]["auc"] for h in held if (d, h) in by])
                 if any((d, h) in by for h in held) else float("nan") for d in dets]
        out += ["| **mean** | " + " | ".join(f"**{v:.3f}**" for v in means) + " |", ""]
    pert = [p for p in dict.fromkeys(c["perturbation"] for c in cells) if p != "none"]  # benchmark-file order
    if pert:
        out += ["## AUC under perturbations (n = real/fake test items)", "",
                "| perturbation | " + " | ".join(dets) + " |", "|---|" + "---|" * len(dets)]
        for p in ["none", *pert]:
            by = {c["detector"]: c for c in cells if c["perturbation"] == p and _is_whole(c)}
            row = [fmt_ci((by.get(d) or {}).get("metrics"), "auc", n=n_of(by.get(d))) for d in dets]
            out.append(f"| {p} | " + " | ".join(row) + " |")
        out.append("")
    return out


def _is_whole(cell: dict[str, Any]) -> bool:
    """A whole-test-set cell (not a by-method / by-CRF subgroup; for leave-one-out the diagonal)."""
    g = cell["group"]
    if "held_out" in g:
        return g["held_out"] == g["tested"]
    return whole_set(cell) and cell["level"] in ("image", "clip")


def write_report(run_dir: str | Path, results: dict[str, Any] | None = None) -> list[Path]:
    """Write ``results.json`` (when given), ``report.md`` and the PNG plots into ``run_dir``; return the paths."""
    run_dir = Path(run_dir)
    if results is not None:
        tmp = run_dir / (RESULTS + ".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        tmp.replace(run_dir / RESULTS)
    else:
        results = load_results(run_dir)
    plots = plot_all(results, run_dir)
    (run_dir / REPORT).write_text(markdown(results, [p.name for p in plots]), encoding="utf-8")
    return [run_dir / RESULTS, run_dir / REPORT, *plots]


# -- plots -------------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, size: float = 3.6):
    plt = _plt()
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def plot_all(results: dict[str, Any], run_dir: Path) -> list[Path]:
    paths: list[Path] = []
    for fn in (plot_roc, plot_robustness, plot_reliability, plot_loo_heatmap):
        paths += fn(results, run_dir)
    return paths


def _by_detector(cells: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in cells:
        out[c["detector"]].append(c)
    return out


def _detector_panels(
    results: dict[str, Any], path: Path, key: str, draw: Callable[[Any, str, list[dict[str, Any]]], None]
) -> list[Path]:
    """One panel per detector, ``draw(ax, detector, cells)`` over its primary whole-set cells that carry ``key``,
    saved as ``path`` (nothing when no cell carries it)."""
    cells = [c for c in results["cells"] if c.get(key) and is_primary(c) and c["level"] != "frame"]
    if not cells:
        return []
    by = _by_detector(cells)
    fig, axes = _grid(len(by))
    for ax, (det, cs) in zip(axes, by.items()):
        draw(ax, det, cs)
    return [_save(fig, path)]


def plot_roc(results: dict[str, Any], run_dir: Path) -> list[Path]:
    return _detector_panels(results, run_dir / "roc.png", "roc", _draw_roc)


def _draw_roc(ax: Any, det: str, cs: list[dict[str, Any]]) -> None:
    for c in cs:
        label = c["group"].get("held_out") or _group_text(c)
        ax.plot(c["roc"]["fpr"], c["roc"]["tpr"], lw=1.2, label=f"{label} ({c['metrics']['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    key = cs[0]["group"].get("key")
    title = f"{det}: ROC on the held-out {key}" if key else f"{det}: ROC"
    ax.set(title=title, xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=6, loc="lower right")


def plot_robustness(results: dict[str, Any], run_dir: Path) -> list[Path]:
    cells = [c for c in results["cells"] if c.get("metrics") and _is_whole(c)]
    fams = sorted({c["perturbation_family"] for c in cells if c["perturbation_level"] is not None})
    paths: list[Path] = []
    for fam in fams:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        axis = ""
        for i, (det, cs) in enumerate(_by_detector(cells).items()):
            for ds in sorted({_group_text(c) for c in cs}):
                pts = sorted(
                    (c["perturbation_level"], c["metrics"]) for c in cs
                    if c["perturbation_family"] == fam and _group_text(c) == ds
                )
                if not pts:
                    continue
                x = [v for v, _ in pts]
                auc = np.array([m["auc"] for _, m in pts])
                lo = np.array([m["ci"].get("auc", [a, a])[0] for (_, m), a in zip(pts, auc)])
                hi = np.array([m["ci"].get("auc", [a, a])[1] for (_, m), a in zip(pts, auc)])
                label = det if len({_group_text(c) for c in cells}) == 1 else f"{det} / {ds}"
                (line,) = ax.plot(x, auc, "o-", ms=3, label=label, color=f"C{i}")
                ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
                clean = [c["metrics"]["auc"] for c in cs if c["perturbation"] == "none" and _group_text(c) == ds]
                if clean:
                    ax.axhline(clean[0], ls="--", lw=0.8, color=line.get_color())
        axis = next(
            (c["perturbation"].split("(")[1].split("=")[0] for c in cells if c["perturbation_family"] == fam), "level"
        )
        lo_y = min([0.45] + [float(np.min(ln.get_ydata())) - 0.02 for ln in ax.get_lines() if len(ln.get_ydata())])
        ax.set_ylim(max(0.0, lo_y), 1.01)
        if fam == "jpeg":
            ax.invert_xaxis()  # quality falls to the right: degradation increases left to right
        ax.set(title=f"AUC vs {fam} ({axis}); dashed = clean", xlabel=axis, ylabel="AUC (95% CI)")
        ax.legend(fontsize=7)
        paths.append(_save(fig, run_dir / f"robustness_{fam}.png"))
    return paths


def plot_reliability(results: dict[str, Any], run_dir: Path) -> list[Path]:
    return _detector_panels(results, run_dir / "reliability.png", "reliability", _draw_reliability)


def _draw_reliability(ax: Any, det: str, cs: list[dict[str, Any]]) -> None:
    count = np.sum([c["reliability"]["count"] for c in cs], axis=0).astype(float)
    sp = np.sum([c["reliability"]["sum_p"] for c in cs], axis=0)
    sy = np.sum([c["reliability"]["sum_y"] for c in cs], axis=0)
    ok = count > 0
    conf, frac = sp[ok] / count[ok], sy[ok] / count[ok]
    ece = float(np.sum(np.abs(frac - conf) * count[ok]) / count.sum())
    n_bins = len(count)
    centers = (np.arange(n_bins) + 0.5) / n_bins
    ax.bar(centers[ok], frac, width=1 / n_bins, alpha=0.35, edgecolor="k", lw=0.5, label="fraction fake")
    ax.plot(conf, frac, "o-", ms=3, label=f"pooled ECE {ece:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(title=det, xlabel="predicted P(fake)", ylabel="observed fraction fake", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")


def plot_loo_heatmap(results: dict[str, Any], run_dir: Path) -> list[Path]:
    cells = [
        c for c in results["cells"] if c.get("metrics") and "held_out" in c["group"] and c["perturbation"] == "none"
    ]
    if not cells:
        return []
    by = _by_detector(cells)
    plt = _plt()
    fig, axes = _grid(len(by), size=4.2)
    for ax, (det, cs) in zip(axes, by.items()):
        rows = sorted({c["group"]["held_out"] for c in cs})
        cols = sorted({c["group"]["tested"] for c in cs})
        mat = np.full((len(rows), len(cols)), np.nan)
        for c in cs:
            mat[rows.index(c["group"]["held_out"]), cols.index(c["group"]["tested"])] = c["metrics"]["auc"]
        im = ax.imshow(mat, vmin=0.5, vmax=1.0, cmap="viridis")
        for name in set(rows) & set(cols):  # outline the held-out diagonal: the number the protocol is about
            r, k = rows.index(name), cols.index(name)
            ax.add_patch(plt.Rectangle((k - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        for (r, k), v in np.ndenumerate(mat):
            if not np.isnan(v):
                ax.text(k, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.8 else "k")
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        key = cs[0]["group"].get("key", "family")
        ax.set(title=f"{det}: AUC", xlabel=f"tested on {key}", ylabel=f"trained without {key}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return [_save(fig, run_dir / "loo_heatmap.png")]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path
