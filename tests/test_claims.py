"""The README's and the default model card's claims against the committed files they come from (issue #31).

A reviewer takes a number from ``README.md`` or ``forensics/assets/models/default/MODEL_CARD.md``, finds the
committed file and the command behind it, and reruns the command. These tests do that rerun for every text-only
regenerator (the transfer index and both selections from the committed ``results.json`` files; the card from its
``model.json``), pin the hand-written numbers of the README's "what a verdict means" and of the card's failure modes
to their results files, and check every label (transfer / seen family / cross-source / in-distribution / in-sample)
against the model's training manifest (the families and pinned sources its ``model.json`` records).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from benchmarks.transfer.protocols import EXTERNAL_PAIRS, FFHQ, SG2, UTK
from benchmarks.transfer.reports import RESULTS, index_text, readme_block
from benchmarks.transfer.selection import select, select_transfer
from detectors.model_card import TRANSFER_VAL_FAMILIES, failure_modes, transfer_val_labels, write_model_card

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "forensics" / "assets" / "models" / "default"
BENCH = REPO / "benchmarks" / "results"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _card() -> dict:
    return _json(MODEL / "model.json")


def _shipped_results() -> dict:
    """The transfer results of the shipped weights that the card quotes (``benchmarks/results/transfer/v14``)."""
    res = _json(RESULTS / "v14" / "results.json")
    assert res["model"]["sha256"] == _card()["weights_sha256"], "the card's results are not the shipped weights'"
    return res


def test_transfer_index_and_selections_regenerate_from_committed_results():
    """``--index``, ``--select`` and ``--select-transfer`` only read the committed results.json files: rerun, they
    give the committed index and selections exactly, from any checkout (machine paths become ``$W``)."""
    assert index_text(RESULTS) == (RESULTS / "README.md").read_text(encoding="utf-8")
    assert json.loads(json.dumps(select(RESULTS))) == _json(RESULTS / "selection.json")
    assert json.loads(json.dumps(select_transfer(RESULTS))) == _json(RESULTS / "selection-transfer.json")


def test_default_card_regenerates_from_its_model_json(tmp_path):
    """MODEL_CARD.md is ``write_model_card`` of the committed model.json: every number in it is in that file."""
    shutil.copy(MODEL / "model.json", tmp_path / "model.json")
    card = _json(tmp_path / "model.json")
    out = write_model_card(tmp_path, card, card["training"]["command"])
    assert out.read_text(encoding="utf-8") == (MODEL / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_card_failure_modes_are_the_committed_results():
    """The failure modes the card and the HTML report show are what ``failure_modes`` writes from the shipped
    model's committed transfer results, and the two numbers written into its text (the run without the shared
    StyleGAN2 scrape, the suite sanity check) are those of their committed results."""
    card = _card()
    assert card["failure_modes"] == failure_modes(card, _shipped_results())
    text = "\n".join(card["failure_modes"])
    x = _json(RESULTS / "X-no-shared-sg2" / "results.json")
    pairs = {p["name"]: p["auc"] for p in x["protocols"]["external-dev"]["pairs"]}
    commercial = pairs["generated-photos vs ciplab-real"]
    assert "`X-no-shared-sg2`" in text and f"AUC {commercial:.3f}" in text
    sanity = [c["metrics"]["auc"] for c in _json(BENCH / "suite-sanity" / "results.json")["cells"]
              if "family" in c["group"]]
    assert f"AUC {min(sanity):.3f}-{max(sanity):.3f}" in text


def test_labels_follow_the_training_manifest():
    """A result is called transfer only when its generator family and its source are absent from the model's
    training manifest; in-distribution and in-sample results come from sources that are in it."""
    card = _card()
    families = card["training"]["families"]
    sources = {s["source"] for d in card["training"]["datasets"] for s in d.get("sources", [])}
    assert sources, "the shipped card lists no pinned training sources"
    # in-distribution (shortcuts: the crossval pair) and in-sample (real-sources) use training sources
    assert {FFHQ, SG2, UTK} <= sources
    # transfer / evaluation-only sets hold no training source
    assert not [s for s in sources if s.startswith(("transfer_val", "external_dev"))]
    assert not {folder.split("/")[0] for _, fake, real in EXTERNAL_PAIRS for folder in (fake, real)} & {
        s.split("/")[-1] for s in sources}
    # transfer_val: a group whose family the model trained on is labelled so, never transfer
    labels = transfer_val_labels(families)
    for group, family in TRANSFER_VAL_FAMILIES.items():
        assert labels[group].startswith("seen family") == (family in families), group
    assert labels["stylegan2"].startswith("seen family")  # the shared thispersondoesnotexist scrape
    card_text = (MODEL / "MODEL_CARD.md").read_text(encoding="utf-8")
    heading = next(line for line in card_text.splitlines() if line.startswith("### transfer-val"))
    seen = [g for g, lab in labels.items() if lab.startswith("seen family")]
    assert f"{', '.join(seen)} is a family it trained on" in heading and "(not transfer)" in heading
    assert "Not transfer: stylegan2 in transfer_val" in card_text


def test_readme_transfer_val_cells_mark_each_models_seen_families():
    """Every transfer_val row of the README block marks with ``†`` exactly the groups whose generator family that
    row's model trained on (from the families its results.json records)."""
    block = readme_block(RESULTS)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert block in readme
    rows = {m.group(1): line for line in block.split("#### External")[0].splitlines()
            if (m := re.match(r"\| \[([^\]]+)\]\(", line))}
    checked = 0
    for f in sorted(RESULTS.glob("*/results.json")):
        r = _json(f)
        if "transfer-val" not in r["protocols"] or r.get("split") == "val":
            continue
        cells = rows[r["label"]].split(" | ")[2:6]  # PGGAN, StyleGAN1, StyleGAN2, SD 1.x
        labels = transfer_val_labels(r["model"].get("families", []))
        for group, cell in zip(("pggan", "stylegan1", "stylegan2", "sd1-a-man"), cells, strict=True):
            assert cell.endswith("†") == labels[group].startswith("seen family"), (r["label"], group)
        checked += 1
    assert checked >= 2


def _verdict_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("### What a verdict means"):readme.index("## Scan files")]


def test_readme_what_a_verdict_means_quotes_the_committed_results():
    """The numbers at the top of the README: flag rates on reals the model never trained on (the policy run) and
    the v14 transfer_val / external_dev AUCs, each as its results.json has it; StyleGAN2 is not called transfer."""
    text = " ".join(_verdict_section().split())
    pol = _json(BENCH / "policies" / "v14" / "results.json")["protocols"]
    reals = [r["flagged"] for r in pol["external-dev"]["reals"]] + [r["flagged"] for r in pol["transfer-val"]["reals"]]
    fpr1 = [100 * f["fpr1"] for f in reals]
    assert f"{min(fpr1):.1f}-{max(fpr1):.1f} % were flagged" in text
    assert f"up to {max(100 * f['balanced'] for f in reals):.1f} %" in text
    res = _shipped_results()["protocols"]
    tv = {(p["group"], p["variant"]): p["auc"] for p in res["transfer-val"]["pairs"]}
    ex = {p["name"]: p["auc"] for p in res["external-dev"]["pairs"]}
    quoted = [tv[("stylegan2", "raw")], tv[("stylegan2", "centre75")], tv[("stylegan1", "raw")],
              tv[("pggan", "raw")], tv[("sd1-a-man", "raw")], ex["lfw-faceswap vs lfw-real"],
              ex["ciplab-splice vs ciplab-real"]]
    for auc in quoted:
        assert f"{auc:.3f}" in text, auc
    assert "StyleGAN2" in text and "a family it trained on, so not transfer" in text
    assert "cross-source" in text  # SD 1.x portraits against FFHQ reals


def test_readme_v14_crossval_numbers_name_the_run_they_come_from():
    """The same v14 weights were scored twice (``N23-flip`` at selection, 400 files per class; ``v14`` rescored
    through the current scan on every file): the README quotes each set under its own name, not one as the other."""
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    para = readme[readme.index("as scored at selection (`N23-flip`"):readme.index("The halved pair moved")]
    for label, start in (("N23-flip", "as scored at selection"), ("v14", "rescored later")):
        r = _json(RESULTS / label / "results.json")
        assert r["model"]["sha256"] == _card()["weights_sha256"], label
        pairs = {p["name"]: p for p in r["protocols"]["shortcuts"]["pairs"] + r["protocols"]["external-dev"]["pairs"]}
        part = para[para.index(start):]
        part = part[: part.index("rescored later")] if label == "N23-flip" else part
        aucs = [pairs[f"stylegan2 vs ffhq, both {v}"]["auc"] for v in ("jpeg75", "jpeg50", "down0.5")]
        matched = " / ".join(f"{a:.3f}" for a in aucs)
        assert matched in part, (label, matched)
        for name in ("lfw-faceswap vs lfw-real", "ciplab-splice vs ciplab-real", "generated-photos vs ciplab-real"):
            assert f"{pairs[name]['auc']:.3f}" in part, (label, name)
        lo, hi = pairs["stylegan2 vs ffhq, both down0.5"]["auc_ci"]
        assert f"{lo:.3f}" in part, (label, "0.5x interval")
