"""``MODEL_CARD.md`` of a trained detector, written from its ``model.json`` card: what data and which generator
families trained it, how it was calibrated and selected, its metrics, lineage and known failure modes.

Kept apart from the training script (:mod:`detectors.default_model`) because the card is a document of its own:
tests and the transfer reports read its helpers (:func:`portable`, :func:`lineage`, :func:`md_sections`) without
running a training.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from forensics_core.config import REPO_ROOT
from forensics_core.errors import ForensicsError


def write_model_card(model_dir: Path, card: dict, command: str) -> Path:
    t = card.get("training", {})
    m = card.get("metrics", {})
    lines = [
        f"# Model card: {card.get('name', card['detector'])}",
        "",
        f"- detector: `{card['detector']}` ({card.get('description', '')})",
        f"- parameters: {card.get('parameters')}, weights dtype {card.get('dtype')}, "
        f"input {card['preprocess']['size']} px, crop `{card['preprocess']['crop']}` "
        f"margin {card['preprocess']['margin']}",
        *_tta_line(card.get("config", {}).get("tta", "none")),
        f"- calibration: `{json.dumps(card.get('calibration'))}`",
        f"- thresholds (flag when calibrated P(fake) >= t): `{json.dumps(card.get('thresholds'))}`",
        f"- trained: {t.get('steps')} steps, {t.get('minutes', 0):.1f} min, stopped by {t.get('stopped')}, "
        f"kept the {t.get('kept', 'best')} epoch; "
        f"n_train {t.get('n_train')}, n_val {t.get('n_val')}",
        f"- fake families seen in training: {', '.join(t.get('families', [])) or '-'}",
        *_init_line(t.get("init_from")),
        *_transfer_lines(card.get("transfer") or {}, t.get("families", [])),
        "",
        "## Training data",
        "",
        "| dataset | manifest sha256 | rows | labels |",
        "|---|---|---|---|",
    ]
    for s in t.get("datasets", []):
        lines.append(f"| `{portable(s['path'])}` | `{s['manifest_sha256'][:16]}` | {s['n']} | {s['by_label']} |")
    made = [f"`{portable(s['path'])}`: `{DATASET_COMMANDS[Path(s['path']).name]}`" for s in t.get("datasets", [])
            if Path(s["path"]).name in DATASET_COMMANDS]
    if made:
        lines += ["", "Made by: " + "; ".join(made) + "."]
    lines += _source_lines(t.get("datasets", []))
    lines += ["", "## Metrics", "",
              "In-distribution, stored files as they are (`crossval`: PNG FFHQ reals vs JPEG q75 StyleGAN2 fakes, "
              "so the formats differ; per generator: this project's samples vs those reals). The delivery-matched "
              "numbers are in the results through `forensics scan` above.", ""]
    for name, rep in m.items():
        if not isinstance(rep, dict) or "auc" not in rep:
            continue
        ci = rep.get("ci", {}).get("auc")
        ci_s = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        ece = rep.get("ece")
        lines.append(
            f"- **{name}**: AUC {rep['auc']:.4f}{ci_s}, TPR@1%FPR {rep['tpr_at_fpr1']:.3f}, "
            f"ECE {ece if ece is None else round(ece, 4)}, n_real {rep['n_real']}, n_fake {rep['n_fake']}"
        )
    by_gen = m.get("crossval_by_generator") or {}
    if by_gen:
        lines += ["", "Crossval by generator (its crossval fakes vs every crossval real):", "",
                  "| generator | AUC | TPR@1%FPR | n_fake |", "|---|---|---|---|"]
        lines += [f"| {g} | {r['auc']:.4f} | {r['tpr_at_fpr1']:.3f} | {r['n_fake']} |" for g, r in by_gen.items()]
    lines += _delivery_lines(t.get("delivery") or {})
    lines += _support_lines(card.get("threshold_support") or {})
    lines += _hold_lines(t.get("threshold_hold") or {})
    lines += _selection_transfer_lines(card.get("selection_transfer") or {})
    lines += _ablation_lines(card.get("selection_transfer") or {})
    lines += _selection_lines(card.get("selection") or {})
    lines += _grouped_loo_lines(card.get("grouped_loo") or {})
    lines += [
        "",
        "## Reproduce",
        "",
        "```",
        portable(command),
        *([portable(t["recalibrated_by"])] if t.get("recalibrated_by") else []),
        "```",
        *(["", "The second command refits calibration and presets on validation data (weights unchanged)."]
          if t.get("recalibrated_by") else []),
        *_lineage_lines(card.get("lineage") or []),
        "",
        "## Licence",
        "",
        card.get("licence", ""),
        "",
        *_statement_lines(card),
        *SPLITS,
    ]
    out = model_dir / "MODEL_CARD.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


#: how the development datasets are built (repo-relative; ``$W`` is any scratch folder)
DATASET_COMMANDS = {
    "shared-src": "forensics data import ../shared/data --layout labels-csv --out $W/data/shared-src --align "
    "--size 128 --store source --workers 2",
    "suite-src": "FORENSICS_WORK=$W bash benchmarks/build_suite_dataset.sh 800 150",
    # every family the script knows, the two newer autoencoders included
    "suite-ae-src": "FORENSICS_WORK=$W OUT=$W/data/suite-ae-src bash benchmarks/build_suite_dataset.sh 800 150",
}

#: what the model is for, written into ``model.json`` (``intended_use``) so the report and the service show it
INTENDED_USE = (
    "Triage of face photos for fully generated faces of the kind it measurably finds in files from sources absent "
    "from training: StyleGAN-family portraits at ordinary portrait framing (StyleGAN2, a family it trained on, from "
    "another source; StyleGAN1, a generator it never trained on, less well: see the transfer_val table). An analyst's "
    "first look, with the report's evidence beside the score, and a moderation queue's ordering under the default "
    "fpr1 policy. Scores are evidence, not proof."
)
OUT_OF_SCOPE = [
    "Sole grounds for any decision about a person (identity, legal, employment, account removal without review).",
    "Diffusion-generated faces and PGGAN-era GAN faces: measured at or below chance on transfer_val (Stable "
    "Diffusion portraits score as more real than photos).",
    "Faces cropped tightly (the face filling most of the frame): the verdict sinks toward 'real' for fakes and "
    "reals alike (transfer_val centre 75 % rows).",
    "Face swaps, reenactments and hand-made splices: this model looks for generation traces, not blending (see "
    "the failure modes for the measured numbers).",
    "Images without a detectable face (the score then comes from a centre crop and is flagged `no_face`).",
    "Proving an image is real: a low score means this model found no trace it knows.",
]
SPLITS = [
    "## Splits",
    "",
    "- **train**: every row of the training datasets whose split is `train` (or empty).",
    "- **val**: the 10 % of each source that `data import` hashes into `val`, including 10 % of the shared `train` "
    "folders; early stopping, calibration (even half) and threshold presets (all val reals) use it.",
    "- **transfer_val**: real-world generators absent from every training folder (`../shared/data/transfer_val`): "
    "the model is *chosen* on it by a rule written down before the candidates were scored; never trained, "
    "calibrated or thresholded on.",
    "- **crossval**: the shared `crossval` folders and the suite's crossval samples: never used for training, "
    "calibration or selection; in-distribution test numbers (the same sources as training).",
    "- **external_dev**: evaluation only (face swaps, splices, a commercial GAN): never trained, calibrated or "
    "selected on.",
    "",
    "## Dataset licences",
    "",
    "- Each training source's licence note is in the training sources table above. UTKFace: non-commercial "
    "research only. FFHQ thumbnails: CC BY-NC-SA 4.0 collection. thispersondoesnotexist StyleGAN2 faces: "
    "research / non-commercial. The project's own generator samples: made from those sets. No training image is "
    "redistributed in the weights file.",
]


def failure_modes(card: dict, results: dict | None) -> list[str]:
    """The measured failure modes, each with its number, from the model's committed transfer results (a
    ``benchmarks.transfer`` ``results.json``); the structural ones (video, no face, data skew) always."""
    out: list[str] = []
    protocols = (results or {}).get("protocols", {})
    ex = {p["name"]: p for p in protocols.get("external-dev", {}).get("pairs", [])}
    swap, splice = ex.get("lfw-faceswap vs lfw-real"), ex.get("ciplab-splice vs ciplab-real")
    if swap and splice:
        out.append(f"Face swaps and splices (external_dev, matched pairs): LFW swaps AUC {swap['auc']:.3f} (TPR "
                   f"{swap['tpr_fpr1']:.2f} under fpr1), CIPLAB splices AUC {splice['auc']:.3f} (TPR "
                   f"{splice['tpr_fpr1']:.2f}): at or near chance.")
    sm = protocols.get("transfer-val", {}).get("summary")  # written by benchmarks.transfer with the cells
    if sm:
        out.append(f"Sources absent from training (transfer_val): worst cell {sm['worst_cell_name']} AUC "
                   f"{sm['worst_cell']:.3f}; worst matched GAN pair at native size {sm['worst_matched_raw']:.3f}, "
                   f"framed to the centre 75 % {sm['worst_matched_centre75']:.3f}, after 0.25x + JPEG q75 "
                   f"{sm['worst_matched_quarter']:.3f}; Stable Diffusion 1.x portraits (cross-source) "
                   f"{sm['sd_raw']:.3f} as published, worst {sm['worst_sd']:.3f}.")
    seen = seen_transfer_val_groups(card.get("training", {}).get("families", []))
    if sm and seen:
        what = "is a generator family" if len(seen) == 1 else "are generator families"
        out.append(f"Not transfer: {', '.join(seen)} in transfer_val {what} this model trained on (from another "
                   "source), so those transfer_val numbers measure a new source and pipeline, not a new generator.")
    out += [
        # both numbers are pinned against the committed results by tests/test_claims.py
        "A run without the shared StyleGAN2 scrape (`X-no-shared-sg2`: the default recipe from scratch on the "
        "internal GAN suite and the real sources; benchmarks/results/transfer/X-no-shared-sg2) scored the "
        "commercial-GAN portraits at AUC 0.284 (cross-source pair): the project's internal GAN suite alone teaches "
        "little that transfers to real-world generators.",
        "The internal suite fails its sanity check (benchmarks/results/suite-sanity): a `blend` model trained on "
        "reals only, which should score ~0.5, separates the suite's families from resolution-matched reals at AUC "
        "0.032-0.921, so the suite's fakes differ from reals in more than generator traces and suite held-out "
        "numbers (the grouped leave-one-out section) are not evidence of generalisation.",
        "Videos are scored frame by frame and pooled per face track; temporal manipulations and audio are not "
        "modelled.",
        "UTKFace (most of the real training faces) is skewed: more women, few dark-skinned faces; per-group flag "
        "rates are in the transfer results.",
    ]
    return out


def _statement_lines(card: dict) -> list[str]:
    lines = ["## Intended use", "", card.get("intended_use", INTENDED_USE), "", "## Out of scope", ""]
    lines += [f"- {x}" for x in card.get("out_of_scope", OUT_OF_SCOPE)]
    lines += ["", "## Known failure modes (measured)", ""]
    lines += [f"- {x}" for x in card.get("failure_modes") or failure_modes(card, None)]
    return [*lines, ""]


def _source_lines(datasets: list[dict]) -> list[str]:
    """Every training source with its pinned repository and commit (from the datasets' manifests)."""
    rows = [src for d in datasets for src in d.get("sources", [])]
    if not rows:
        return []
    lines = ["", "Training sources (train split; each file pinned by repository, commit and md5 at import):", "",
             "| source | class | family | rows | repository @ commit | licence |", "|---|---|---|---|---|---|"]
    for r in rows:
        where = f"`{r['repo']}` @ `{r['commit'][:12]}`" if r.get("repo") else "made by this project"
        lines.append(f"| {r['source']} | {r['label']} | {r.get('family') or '-'} | {r['n']} | {where} | "
                     f"{r.get('licence') or '-'} |")
    return lines


#: how the selection rule changed, with the date of each clause and what was already on disk when it was added
#: (issue #31: a rule changed after test numbers existed must say so wherever the rule is shown)
RULE_HISTORY = [
    "v2 to v14: candidates ranked on the in-distribution validation split of the two training scrapes.",
    "2026-12-04, commit 971dd95: tie rule (flag rates within one standard error of the quietest are tied), added "
    "before candidates F / G were scored.",
    "2026-12-04, commit 7582045: fusion rule (a fused model replaces its member only at no measurable cost on val), "
    "added before the fused candidates were scored.",
    "2026-12-04, commit e6595c8: median-shift clause, added **after** the crossval results of E-held, F-chroma and "
    "G-camera were on disk; it changed the winner from C-held to G-camera.",
    "2026-12-07, commit cd76ad8: selection on transfer_val (eligibility by FFHQ-512 flag rate and in-distribution "
    "steadiness, then the worst cell), declared before any candidate was scored on it.",
]


def _selection_transfer_lines(sel: dict) -> list[str]:
    if not sel:
        return []
    lines = ["", "## Selection (transfer_val)", "", f"Selected **{sel['selected']}** on {sel['split']}.",
             f"Rule: {sel['rule']}." + (f" {sel['fallback']}." if sel.get("fallback") else ""), "",
             "| candidate | weights | worst cell (AUC) | mean AUC | FFHQ-512 reals flagged fpr1 (worst) "
             "| in-distribution val flag / shift | eligible |", "|---|---|---|---|---|---|---|"]
    for c in sel["candidates"]:
        vf = "-" if c.get("val_worst_flag_fpr1") is None else (
            f"{100 * c['val_worst_flag_fpr1']:.1f} % / {c['val_max_shift']:.3f}")
        lines.append(f"| {c['label']} | `{c['sha256'][:12]}` | {c['worst_cell_name']} ({c['worst_cell']:.3f}) | "
                     f"{c['mean_auc']:.3f} | {100 * c['worst_real_flag_fpr1']:.1f} % | {vf} | {c['eligible']} |")
    return [*lines, "", "How the rule changed:", "", *(f"- {h}" for h in RULE_HISTORY)]


#: the ablation rows of issue #30 (labels in the transfer_val selection), each adding one ingredient to the last
ABLATIONS = {
    "abl-R": "real-world sources only (shared scrapes + SD 1.4 / Unsplash)",
    "abl-RG": "+ the internal GAN suite",
    "abl-RGA": "+ autoencoder reconstructions of the reals",
    "abl-RGAS": "+ self-blended images",
}


def _ablation_lines(sel: dict) -> list[str]:
    """The design-premise ablations from the transfer_val selection record: same recipe (``transfer-npr``, 2000
    steps from scratch), one training ingredient added per row, scored like every candidate."""
    rows = {c["label"]: c for c in sel.get("candidates", []) if c["label"] in ABLATIONS}
    if not rows:
        return []
    lines = ["", "## Ablations (transfer_val: does each training ingredient help on generators never seen?)", "",
             "| row | training data | worst GAN pair raw / centre 75 % / 0.25x | SD 1.x raw (cross-source) | "
             "worst cell | mean | FFHQ-512 reals flagged fpr1 |", "|---|---|---|---|---|---|---|"]
    for label, what in ABLATIONS.items():
        c = rows.get(label)
        if c:
            lines.append(f"| {label} | {what} | {c['worst_matched_raw']:.3f} / {c['worst_matched_centre75']:.3f} / "
                         f"{c['worst_matched_quarter']:.3f} | {c['sd_raw']:.3f} | {c['worst_cell']:.3f} | "
                         f"{c['mean_auc']:.3f} | {100 * c['worst_real_flag_fpr1']:.1f} % |")
    return lines


def _delivery_lines(d: dict) -> list[str]:
    if not d or d.get("preset", "none") == "none":
        return ["", "## Delivery histories", "", "None: images were used as stored."]
    keys = [k for k in d if k != "preset"]
    return [
        "", "## Delivery histories", "",
        f"Preset `{d['preset']}`: every training image, real or fake, got a random history from this one "
        "distribution at its native resolution before the face crop; every validation image one fixed history:",
        "", "| parameter | value |", "|---|---|", *[f"| {k} | {d[k]} |" for k in keys],
    ]


def _support_lines(sup: dict) -> list[str]:
    if not sup:
        return []
    lines = ["", "## Threshold presets and their support", "", "| preset | FPR | val reals | reals above | estimable |",
             "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['fpr']} | {v['n_real']} | {v['reals_above']} | {'yes' if v['estimable'] else '**no**'} |"
              for k, v in sup.items()]
    return lines


def _hold_lines(hold: dict) -> list[str]:
    """Each FPR preset's threshold under every common re-delivery of the val reals, and which one set it."""
    from detectors.calibration import HOLD_MIN_SOURCE, MIN_TAIL, PRESET_FPR

    if not hold:
        return []
    names = [k for k in next(iter(hold.values())) if k not in ("held_by", "n_real")]
    lines = ["", "## Presets held under every common delivery", "",
             "Each FPR preset is the highest threshold that keeps the validation reals at its FPR under every "
             "delivery below (`mixed`: their own drawn histories), pooled and for each real source with at least "
             f"{HOLD_MIN_SOURCE} validation reals on its own, so the promise holds for a stream of files that all "
             "share one history and come from one population. `rests on`: the validation reals behind the "
             f"threshold that set the preset (one source's own when a source set it) and how many lie above it; "
             f"under {MIN_TAIL} above, the preset is a guess from too thin a tail.", "",
             "| preset | " + " | ".join(names) + " | set by | rests on (above) |", "|---" * (len(names) + 3) + "|"]
    for p, r in hold.items():
        above = r["n_real"] * PRESET_FPR.get(p, 0.0)
        flag = "" if above >= MIN_TAIL else " **thin**"
        lines.append(f"| {p} | " + " | ".join(f"{r[n]:.4f}" for n in names)
                     + f" | {r['held_by']} | {r['n_real']} ({above:.1f}){flag} |")
    return lines


def _selection_lines(sel: dict) -> list[str]:
    if not sel:
        return []
    lines = ["", "## Selection", "", f"Selected **{sel['selected']}** on {sel['split']}.", f"Rule: {sel['rule']}.", "",
             "| candidate | weights | fake families trained on | worst val real flag rate (fpr1) "
             "| max val median shift | mean val matched AUC | quiet | eligible |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {c['label']} | `{c['sha256'][:12]}` | {c.get('n_families', '?')} | "
              f"{100 * c['worst_val_real_flag_fpr1']:.1f} % | {c['max_val_median_shift']:.3f} | "
              f"{c['mean_val_matched_auc']:.3f} | {c.get('quiet', '-')} | {c['eligible']} |"
              for c in sel["candidates"]]
    fused = [c for c in sel["candidates"] if c.get("members")]
    if fused:
        lines += ["", f"Fused candidates ({sel.get('fusion_rule', '')}): "
                  + ", ".join(f"{c['label']} {'replaces' if c['eligible'] else 'does not replace'} it"
                              for c in fused) + "."]
    if sel.get("tie_band") is not None:
        tied = [c["label"] for c in sel["candidates"] if c.get("tied_with_quietest")]
        lines += ["", f"No candidate met the flag-rate bar; tied with the quietest (within "
                  f"{100 * sel['tie_band']:.1f} points, one standard error): {', '.join(tied)}."]
    return lines


def md_sections(markdown: str, heading: str | None = None) -> list[str]:
    """A benchmark ``report.md`` nested under a card section: every ``## `` section (``heading=None``, dropping
    the title / command preamble) or the one whose heading starts with ``heading``; headings go one level down."""
    lines, out, keep = markdown.splitlines(), [], False
    for line in lines:
        if line.startswith("## "):
            keep = heading is None or line.startswith(heading)
        if keep:
            out.append("#" + line if line.startswith("## ") else line)
    return out


#: the generator family behind each transfer_val fake group, as a card's ``families`` name it. transfer_val's files
#: are in no training folder, but a group whose *family* the model trained on (StyleGAN2 from the
#: thispersondoesnotexist scrape; SD 1.4 portraits for the transfer recipes) is a known generator from a new source
#: and pipeline, not transfer: the labels say so (:func:`transfer_val_labels`)
TRANSFER_VAL_FAMILIES = {"pggan": "pggan", "stylegan1": "stylegan1", "stylegan2": "stylegan2",
                         "sd1-a-man": "stable-diffusion"}
#: transfer_val groups whose reals are another source than the fakes' (FFHQ-512 against SD 1.x portraits)
TRANSFER_VAL_CROSS_SOURCE = ("sd1-a-man",)


def seen_transfer_val_groups(families: list[str] | tuple[str, ...]) -> list[str]:
    """The transfer_val fake groups whose generator family is among ``families`` (a model's training families)."""
    trained = set(families)
    return [group for group, family in TRANSFER_VAL_FAMILIES.items() if family in trained]


def transfer_val_labels(families: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``{group: label}`` for a model trained on ``families``: ``transfer`` (a generator family it never trained
    on), ``seen family`` (one it trained on, here from another source) and, for a group whose reals come from
    elsewhere, ``cross-source`` beside either."""
    seen = seen_transfer_val_groups(families)
    out = {}
    for group in TRANSFER_VAL_FAMILIES:
        label = "seen family" if group in seen else "transfer"
        out[group] = f"{label}, cross-source" if group in TRANSFER_VAL_CROSS_SOURCE else label
    return out


def _transfer_val_heading(families: list[str]) -> str:
    """What a model's transfer_val section measures, group by group, from the families it trained on."""
    def named(groups: list[str], one: str, many: str) -> str:
        return f"{', '.join(groups)} {one if len(groups) == 1 else many}"

    seen = seen_transfer_val_groups(families)
    new = [g for g in TRANSFER_VAL_FAMILIES if g not in seen]
    parts = ["files absent from every training folder"]
    if new:
        parts.append(named(new, "is a generator family", "are generator families") + " this model never trained "
                     "on (transfer)")
    if seen:
        parts.append(named(seen, "is a family", "are families") + " it trained on, here from another source and "
                     "pipeline (not transfer)")
    parts.append(named(list(TRANSFER_VAL_CROSS_SOURCE), "is", "are") + " also cross-source against the FFHQ-512 "
                 "reals")
    return "; ".join(parts) + "; what selection reads"


#: the order a card shows a transfer report's sections in, and what each measures: transfer first (generators and
#: real photos absent from training), the in-distribution crossval pair after them, labelled so; the transfer-val
#: label depends on the model's families, so :func:`_transfer_lines` writes it (:func:`_transfer_val_heading`)
TRANSFER_SECTIONS = (
    ("## transfer-val", ""),
    ("## external-dev", "transfer: swaps, splices, a commercial GAN; evaluation only, never a selection input"),
    ("## shortcuts", "in-distribution: the shared crossval pair, the same two scrapes as training"),
    ("## real-sources", "in-sample: sources trained on"),
    ("## watermark", "in-distribution: the shared crossval pair with the scrape's corner wiped"),
)


def _transfer_lines(report: dict, families: list[str]) -> list[str]:
    """The model's results through ``forensics scan``, at the top of the card: each section of its transfer report
    under a heading that says what it measures, transfer first; the transfer-val heading names the groups whose
    family the model trained on (``families``) as such."""
    if not report:
        return []
    lines = ["", "## Results through `forensics scan` (transfer first; the in-distribution pair after)", "",
             f"From `{portable(report['command'])}`:"]
    known = {**dict(TRANSFER_SECTIONS), "## transfer-val": _transfer_val_heading(families)}
    others = [h for h in report["markdown"].splitlines() if h.startswith("## ") and h not in known]
    for heading in [*known, *others]:  # a protocol this table does not know keeps its place, unlabelled, last
        section = md_sections(report["markdown"], heading)
        if section:
            label = f" ({known[heading]})" if heading in known else ""
            lines += ["", section[0] + label, *section[1:]]
    return lines


def _grouped_loo_lines(loo: dict) -> list[str]:
    if not loo:
        return []
    return ["", "## Grouped leave-one-out (this detector family, retrained per held-out group)", "",
            f"Not this model file: `{loo['command']}` trains one small 64 px model per held-out group of "
            "generator families that share a component and scores it on that group; it says how far what this "
            "architecture learns carries to families it never saw.", "",
            *md_sections(loo["markdown"], "## Held-out groups"), *md_sections(loo["markdown"], "## Held-out group AUC")]


#: an absolute scratch folder as commands record it (``/work/scratch``, ``/home/x/scratch``): wherever the machine
#: that ran them kept it, not only beside this checkout, so a card or index renders the same from any clone
_SCRATCH = re.compile(r"(?<![\w.$/-])/(?:[\w.-]+/)*scratch(?=/|\b)")


def portable(text: str) -> str:
    """A command or path as a reader can rerun it: a scratch folder (the one beside the repo, or an absolute
    ``.../scratch`` recorded on the machine that ran the command) becomes ``$W``, the repo itself ``.`` (a model
    card must not tell people to look in one machine's folders)."""
    text = _SCRATCH.sub("$W", text)  # the scratch folder beside the repo is one of these
    return re.sub(re.escape(str(REPO_ROOT)) + r"(?![\w.-])", ".", text)  # the repo, not a sibling named like it


def lineage(card: dict, limit: int = 8) -> list[dict]:
    """The fine-tuned-from chain, newest first: each ancestor's name, weights sha256 and training command, read
    from its model file while the recorded reference still resolves to the recorded weights (an installed name
    such as ``default`` moves on when a new model is installed; the chain then stops at the hash)."""
    from detectors.modelfile import load_model

    chain: list[dict] = []
    origin = card.get("training", {}).get("init_from")
    while origin and len(chain) < limit:
        entry = {"name": origin.get("name", ""), "sha256": origin.get("sha256", ""), "command": ""}
        chain.append(entry)
        try:
            src = load_model(origin["model"], device="cpu")
        except (ForensicsError, KeyError):
            break
        if src.sha256 != origin.get("sha256"):
            break
        entry["command"] = src.card.get("training", {}).get("command", "")
        if src.card.get("lineage"):  # an installed ancestor recorded its own chain while it still resolved
            chain.extend(src.card["lineage"][: limit - len(chain)])
            break
        origin = src.card.get("training", {}).get("init_from")
    return chain


def _lineage_lines(chain: list[dict]) -> list[str]:
    if not chain:
        return ["", "Trained from scratch (no fine-tuned-from chain)."]
    lines = ["", "Lineage (fine-tuned from, newest first; rebuild the oldest first):", ""]
    for i, e in enumerate(chain, 1):
        cmd = f": `{portable(e['command'])}`" if e["command"] else " (command in that model's own card)"
        lines.append(f"{i}. {e['name'] or '?'} `{e['sha256'][:16]}`{cmd}")
    return lines


def _tta_line(tta: str) -> list[str]:
    """The card says when a score is an average over test-time views (set by ``detector calibrate --tta``)."""
    if tta == "none":
        return []
    return [f"- test-time views: `{tta}` (`DetectorConfig.tta`; logits averaged over the views, calibrated on "
            "the average)"]


def _init_line(origin: dict | None) -> list[str]:
    if not origin:
        return []
    return [f"- fine-tuned from: `{portable(origin['model'])}` ({origin.get('name') or '?'}, weights sha256 "
            f"`{origin['sha256'][:16]}`)"]
