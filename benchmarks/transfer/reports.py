"""Markdown from results: one model's ``report.md`` (:func:`render`), the comparison tables, the index
``benchmarks/results/transfer/README.md`` (:func:`write_index`) and the README's generated block
(:func:`readme_block`).

Reports read ``results.json`` files and the selection records; they never compute a score or choose a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.transfer.metrics import transfer_val_summary
from detectors.model_card import seen_transfer_val_groups

RESULTS = Path(__file__).resolve().parents[1] / "results" / "transfer"


#: what the real-sources rows are and are not: printed under their table, since the rows look like test rates
REAL_SOURCES_NOTE = (
    "**In-sample rows.** Every row here comes from a source the model trained on, and the validation reals (the "
    "UTKFace rows, and FFHQ on the val split) are the ones its threshold presets were fitted on: they show how the "
    "flag rate differs between sources and between UTKFace's race and gender groups, not the false-positive rate "
    "on new photos. That is measured on reals from sources absent from training: the external-dev and "
    "transfer-val real tables."
)


def render(res: dict[str, Any]) -> str:
    """Markdown of one model's results (written next to ``results.json``)."""
    m = res["model"]
    lines = [
        f"# Transfer protocols: {res['label']} ({res.get('split', 'crossval')} split)",
        "",
        f"Model `{m['name']}` (weights sha256 `{m['sha256'][:16]}`), thresholds {json.dumps(m['thresholds'])}.",
        f"Command: `{res['command']}` (commit {res['commit']}, {res['minutes']:.1f} min)."
        + (f" Face stage: `{res['scan']['face_detector']}` at {res['scan']['detect_max_side']} px." if "scan" in res
           else ""),
        "",
    ]
    sc = res["protocols"].get("shortcuts")
    if sc:
        lines += [
            "## shortcuts", "", f"Reals: {sc['reals']}. Fakes: {sc['fakes']}.", "",
            "| reals as | n | median P(fake) | shift vs raw | flagged balanced | flagged fpr1 | flagged fpr01 |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [f"| {r['variant']} | {r['n']} | {r['median_p']:.3f} | {r['median_shift']:+.3f} | {_flags(r)} |"
                  for r in sc["real_variants"]]
        lines += ["", _pair_table(sc["pairs"]), "", sc["note"], ""]
    rs = res["protocols"].get("real-sources")
    if rs:
        lines += [
            "## real-sources", "", "| reals | n | median P(fake) | flagged balanced | flagged fpr1 | flagged fpr01 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {g['group']} | {g['n']} | {g['median_p']:.3f} | {_flags(g)} |" for g in rs["groups"]]
        lines += ["", REAL_SOURCES_NOTE, ""]
    ex = res["protocols"].get("external-dev")
    if ex:
        lines += ["## external-dev", "", f"{ex['root']}.", "", _pair_table(ex["pairs"]), ""]
        if ex.get("reals"):  # results before 2026-12-07 counted only fpr1, inside the pair table
            lines += ["Reals flagged by each policy (sources absent from training):", "",
                      "| reals | n | median P(fake) | flagged balanced | flagged fpr1 | flagged fpr01 |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {r['reals']} | {r['n']} | {r['median_p']:.3f} | {_flags(r)} |" for r in ex["reals"]]
            lines.append("")
    tv = res["protocols"].get("transfer-val")
    if tv:
        lines += ["## transfer-val", "", f"{tv['root']}. AUC of each fake group against the FFHQ-512 reals, both "
                  "delivered the same way (matched: one pipeline for both classes; cross-source: other framing, "
                  "quality and subjects).", "", _tv_grid(tv), "", "Reals flagged (FFHQ-512):", "",
                  "| variant | n | median P(fake) | flagged balanced | flagged fpr1 | flagged fpr01 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['n']} | {r['median_p']:.3f} | {_flags(r)} |" for r in tv["reals"]]
        lines += ["", _pair_table(tv["pairs"]), ""]
    wm = res["protocols"].get("watermark")
    if wm:
        lines += ["## watermark", "", f"{wm['note']} ({wm['split']} split).", "", _pair_table(wm["pairs"]), ""]
    wp = res["protocols"].get("window-probe")
    if wp:
        lines += render_probe(wp)
    ud = res["protocols"].get("unseen-decoders")
    if ud:
        seen = ", ".join(
            f"{f['family']} ({f['decoder_upsample']}, {f['res']} px, {'seen' if f['seen_in_training'] else 'unseen'})"
            for f in ud["families"]
        )
        gone = f" Not built (no crossval folder): {', '.join(ud['missing'])}." if ud.get("missing") else ""
        lines += ["## unseen-decoders", "", f"{ud['root']}: {seen}.{gone}", "", _pair_table(ud["pairs"]), ""]
    return "\n".join(lines)


def _tv_grid(tv: dict[str, Any]) -> str:
    """Groups x variants of AUCs, the worst cell of each row last."""
    vs = tv["variants"]
    rows = ["| fakes | " + " | ".join(vs) + " | worst |", "|---|" + "---|" * (len(vs) + 1)]
    for g in (*tv["matched"], *tv["cross_source"]):
        aucs = {p["variant"]: p["auc"] for p in tv["pairs"] if p["group"] == g}
        kind = "" if g in tv["matched"] else " (cross-source)"
        rows.append(f"| {g}{kind} | " + " | ".join(f"{aucs[v]:.3f}" for v in vs) + f" | {min(aucs.values()):.3f} |")
    return "\n".join(rows)


def _flags(row: dict[str, Any]) -> str:
    """``balanced % | fpr1 % | fpr01 %`` cells of a row's flag rates (``-`` where an older result did not count one)."""
    f = row["flagged"]
    return " | ".join("-" if k not in f else f"{100 * f[k]:.1f} %" for k in ("balanced", "fpr1", "fpr01"))


def _pair_table(pairs: list[dict[str, Any]]) -> str:
    rows = [
        "| pair | n real / fake | AUC [95 % CI] | reals flagged fpr1 [95 % CI] | TPR fpr1 "
        "| precision fpr1 at 1 / 10 / 50 % fakes [range from the rate bounds] |",
        "|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for p in pairs:
        ranges = p.get("precision_fpr1_range") or {}
        prec = " / ".join(
            fmt(v) + (f" [{fmt(ranges[k][0])}, {fmt(ranges[k][1])}]" if k in ranges else "")
            for k, v in p["precision_fpr1"].items()
        )
        ci = p.get("reals_flagged_fpr1_ci")
        flag = f"{100 * p['reals_flagged_fpr1']:.1f} %" + (
            f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")  # older results carry no bounds
        rows.append(
            f"| {p['name']} | {p['n_real']} / {p['n_fake']} | {p['auc']:.3f} [{p['auc_ci'][0]:.3f}, "
            f"{p['auc_ci'][1]:.3f}] | {flag} | {p['tpr_fpr1']:.2f} | {prec} |"
        )
    return "\n".join(rows)


def _results(root: Path, split: str) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        if r.get("split", "crossval") == split:
            out.append((f, r))
    return out


def comparison_table(root: Path, split: str = "crossval", link: str = "") -> str:
    """In-distribution: one row per model under ``root`` with a ``shortcuts`` result of ``split`` (the shared
    StyleGAN2 scrape and FFHQ thumbnails, the same sources the models trained on)."""
    head = (
        "| model | weights | worst real flag rate fpr1 (variant) | worst median shift | matched q75 AUC | "
        "matched q50 AUC | matched 0.5x AUC |"
    )
    lines = [head, "|" + "---|" * 7]
    for f, r in _results(root, split):
        sc = r["protocols"].get("shortcuts")
        if not sc:
            continue
        worst = max(sc["real_variants"], key=lambda v: v["flagged"]["fpr1"])
        shift = max(abs(v["median_shift"]) for v in sc["real_variants"])
        pa = {p["name"].split("both ")[-1]: p["auc"] for p in sc["pairs"]}
        cells = [
            f"[{r['label']}]({link}{f.parent.name}/report.md)", f"`{r['model']['sha256'][:12]}`",
            f"{100 * worst['flagged']['fpr1']:.1f} % ({worst['variant']})", f"{shift:.3f}",
            f"{pa['jpeg75']:.3f}", f"{pa['jpeg50']:.3f}", f"{pa['down0.5']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def external_table(root: Path, link: str = "") -> str:
    """The evaluation-only ``external_dev`` pairs: swaps and splices against their own reals (matched), the
    commercial GAN against the splice set's reals (cross-source: it measures the two sources as much as the model)."""
    lines = ["| model | weights | LFW swap vs LFW real | splice vs CIPLAB real | commercial GAN vs CIPLAB real "
             "(cross-source) | LFW reals flagged fpr1 [95 % CI] |", "|" + "---|" * 6]
    for f, r in _results(root, "crossval"):
        ex = r["protocols"].get("external-dev")
        if not ex:
            continue
        pe = ex["pairs"]
        ci = pe[0].get("reals_flagged_fpr1_ci")
        flag = f"{100 * pe[0]['reals_flagged_fpr1']:.1f} %" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
        lines.append(f"| [{r['label']}]({link}{f.parent.name}/report.md) | `{r['model']['sha256'][:12]}` | "
                     + " | ".join(f"{p['auc']:.3f}" for p in pe) + f" | {flag} |")
    return "\n".join(lines)


def transfer_val_table(root: Path, link: str = "", prefix: str = "") -> str:
    """One row per model under ``root`` with a transfer-val result (whose label starts with ``prefix``): the goal
    cells side by side; ``†`` marks a group whose generator family that model trained on (:data:`SEEN_NOTE`)."""
    lines = [
        "| model | weights | PGGAN raw / c75 / 0.25x | StyleGAN1 raw / c75 / 0.25x | StyleGAN2 raw / c75 / 0.25x "
        "| SD 1.x raw / c75 / 0.25x (cross-source) | worst cell | mean | FFHQ-512 reals flagged fpr1 (worst) |",
        "|" + "---|" * 9,
    ]
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        tv = r["protocols"].get("transfer-val")
        if not tv or not r["label"].startswith(prefix):
            continue
        cells = {(p["group"], p["variant"]): p["auc"] for p in tv["pairs"]}
        quarter = [v for v in tv["variants"] if v.startswith("down0.25")]

        seen = seen_transfer_val_groups(r["model"].get("families", []))

        def trio(g: str, cells: dict = cells, quarter: list = quarter, seen: list = seen) -> str:
            q = min(cells[(g, v)] for v in quarter)
            mark = " †" if g in seen else ""
            return f"{cells[(g, 'raw')]:.3f} / {cells[(g, 'centre75')]:.3f} / {q:.3f}{mark}"

        sm = transfer_val_summary(tv)
        lines.append(
            f"| [{r['label']}]({link}{f.parent.name}/report.md) | `{r['model']['sha256'][:12]}` | "
            + " | ".join(trio(g) for g in ("pggan", "stylegan1", "stylegan2", "sd1-a-man"))
            + f" | {sm['worst_cell']:.3f} | {sm['mean_auc']:.3f} | {100 * sm['worst_real_flag_fpr1']:.1f} % |"
        )
    return "\n".join(lines)


#: what the ``†`` of a transfer_val cell means, printed beside every table that uses it
SEEN_NOTE = (
    "`†`: a generator family that row's model trained on (StyleGAN2: the thispersondoesnotexist scrape; SD 1.x: the "
    "SD 1.4 portraits of the `transfer-*` recipes), here from another source and pipeline: a known generator from a "
    "new source, not transfer. The cells without it are generators the model never trained on."
)


def readme_block(root: Path) -> str:
    """The README's results: transfer (generators absent from training) first, then the evaluation-only external
    pairs, then the in-distribution crossval table; each with the selection that used it."""
    link = "benchmarks/results/transfer/"
    lines = ["#### Transfer: real-world generators in files absent from every training folder (`transfer_val`)", "",
             "Each cell: AUC of the fakes against the FFHQ-512 reals, both delivered the same way; `c75`: both cut "
             "to the centre 75 % of each side (a tightly framed photo); `0.25x`: the worse of area and Lanczos "
             "downscaling, then JPEG q75. SD 1.x against FFHQ is cross-source (other framing, quality and subjects). "
             + SEEN_NOTE, "", transfer_val_table(root, link=link), ""]
    tsel = root / "selection-transfer.json"
    if tsel.is_file():
        sel = json.loads(tsel.read_text(encoding="utf-8"))
        lines += [f"Shipped: **{sel['selected']}**, selected on transfer_val ({sel['rule']}). "
                  + (f"{sel['fallback']}. " if sel.get("fallback") else ""), ""]
    lines += ["#### External (evaluation only: never trained, calibrated or selected on)", "",
              external_table(root, link=link), "",
              "#### In-distribution: the shared crossval pair (the same two scrapes as training)", "",
              "StyleGAN2 (thispersondoesnotexist scrape) vs FFHQ thumbnails, crossval folders: the same sources the "
              "models trained on, so these say nothing about unseen generators.", "",
              comparison_table(root, "crossval", link=link), ""]
    sel_path = root / "selection.json"
    if sel_path.is_file():
        sel = json.loads(sel_path.read_text(encoding="utf-8"))
        lines.append(f"Up to v14, models were selected on the in-distribution validation split ({sel['rule']}; "
                     f"last selected: **{sel['selected']}**). ")
    lines.append(
        "Generated by `python -m benchmarks.transfer --readme README.md` from "
        "`benchmarks/results/transfer/*/results.json` ([index with the validation table]"
        "(benchmarks/results/transfer/README.md))."
    )
    return "\n".join(lines)


def write_index(root: Path) -> Path:
    """``ROOT/README.md``: the validation table the selection used, the selection, then the test tables."""
    out = root / "README.md"
    out.write_text(index_text(root), encoding="utf-8")
    return out


def index_text(root: Path) -> str:
    """The text :func:`write_index` writes (a test compares it with the committed index)."""
    sel_path = root / "selection.json"
    lines = [
        "# Transfer protocols: every candidate, every protocol",
        "",
        "Generated by `python -m benchmarks.transfer --index benchmarks/results/transfer` from the `results.json` "
        "of each folder (each folder's `report.md` has its command, model hash and intervals).",
        "",
        "## transfer_val (files absent from training; what selection uses since issue #30)",
        "",
        SEEN_NOTE,
        "",
        transfer_val_table(root),
        "",
        "## Validation split, in-distribution (what selection used up to v14)",
        "",
        comparison_table(root, "val"),
    ]
    tsel = root / "selection-transfer.json"
    if tsel.is_file():
        sel = json.loads(tsel.read_text(encoding="utf-8"))
        lines += ["", f"**Selected on transfer_val: {sel['selected']}** (rule: {sel['rule']}).",
                  "Made by `python -m benchmarks.transfer --select-transfer benchmarks/results/transfer`."]
    if sel_path.is_file():
        sel = json.loads(sel_path.read_text(encoding="utf-8"))
        lines += ["", f"**Selected on validation (up to v14): {sel['selected']}** (rule: {sel['rule']}; "
                  f"split: {sel['split']}).",
                  "Made by `python -m benchmarks.transfer --select benchmarks/results/transfer`."]
    from detectors.model_card import portable  # machine paths out of the recorded commands

    lines += ["", "## Candidates: how each was trained", ""]
    seen: set[str] = set()
    for f in sorted(root.glob("*/results.json")):
        m = json.loads(f.read_text(encoding="utf-8"))["model"]
        if m["sha256"] in seen:
            continue
        seen.add(m["sha256"])
        cmd = m.get("trained_by") or "(command in its model card)"
        lines.append(f"- `{m['sha256'][:12]}` ({len(m.get('families', []))} fake families): `{portable(cmd)}`")
    lines += [
        "",
        "## External: external_dev (never a selection input)",
        "",
        external_table(root),
        "",
        "## In-distribution test: the shared crossval pair (never a selection input)",
        "",
        comparison_table(root, "crossval"),
        "",
        "Goals (issue #17, in-distribution): reals flagged <= 2 % under fpr1 in every variant, median shift <= 0.05, "
        "matched AUC >= 0.95. Goals (issue #30, transfer): every matched transfer_val pair >= 0.90 at native size "
        "and centre 75 %, >= 0.85 after 0.25x + q75; SD 1.x >= 0.85; reals from sources not in training flagged "
        "<= 2 % under fpr1.",
    ]
    return "\n".join(lines) + "\n"


def render_probe(wp: dict[str, Any]) -> list[str]:
    """Markdown lines of the ``window-probe`` section: AUC (median P(fake) of fakes / reals) per group x window."""
    wins = wp["windows"]
    lines = ["## window-probe", "", f"{wp['root']}: which part of a tighter framing moves the verdict. The last two "
             "cuts show the face at the same share of the input; a gap between them is where the window sits.", "",
             "| fakes | " + " | ".join(wins) + " |", "|---|" + "---|" * len(wins)]
    for g in dict.fromkeys(p["group"] for p in wp["pairs"]):
        cells = {p["window"]: p for p in wp["pairs"] if p["group"] == g}
        lines.append(f"| {g} | " + " | ".join(
            f"{cells[w]['auc']:.3f} ({cells[w]['median_fake_p']:.3f} / {cells[w]['median_real_p']:.3f})" for w in wins
        ) + " |")
    lines += ["", "Cells: AUC (median P(fake) of the fakes / of the reals). Files without a face in the photo or in "
              f"its centre, left out: {wp['skipped_no_face']}.", ""]
    return lines
