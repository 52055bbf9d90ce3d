"""Tabulate ``benchmarks/heldout_detectors.sh`` results: one Markdown table built from the eval JSON files.

Each run ``TAG`` leaves ``TAG.sg2.json`` (shared StyleGAN2 crossval vs FFHQ crossval) and ``TAG.suite.json`` (the
suite's crossval samples per generator, plus the same reals). The table never holds a number typed by hand.

Example: python -m benchmarks.heldout benchmarks/results/heldout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: the shared StyleGAN2 set's generator name; ``forensics gan sample`` names the project's samples after their
#: family (``dcgan``, ``stylegan2``...), so per-generator rows separate the two StyleGAN2 sets
SHARED_SG2 = "tpdne-stylegan2"


def _auc(rep: dict[str, Any] | None) -> str:
    if not rep or rep.get("auc") is None:
        return "-"
    ci = rep.get("ci", {}).get("auc")
    n = f" (n={rep['n_real']}/{rep['n_fake']})" if "n_real" in rep else ""
    return f"{rep['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]{n}" if ci else "")


def _num(rep: dict[str, Any] | None, key: str) -> str:
    v = (rep or {}).get(key)
    return "-" if v is None else f"{v:.3f}"


def family_of(generator: str) -> str:
    """The registry family of a generator name (``dcgan-k3`` -> ``dcgan``); the shared set's is ``stylegan2``."""
    from generators.registry import GENERATORS

    if generator == SHARED_SG2:
        return "stylegan2"
    return GENERATORS.get(generator).meta.get("family", generator) if generator in GENERATORS else generator


def rows(results: Path) -> list[str]:
    """One summary row per run: which fake families it trained on (``TAG.families.json``, written by the script
    from the model card), its AUC on every generator of a family it never saw, and the shared StyleGAN2 crossval."""
    out = [
        "| run | fake families in training | unseen generators: AUC | shared SG2 crossval AUC [95% CI] | TPR@1%FPR "
        "| ECE | mean AUC, seen generators | images/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sg2_path in sorted(results.glob("*.sg2.json")):
        tag = sg2_path.name[: -len(".sg2.json")]
        sg2 = json.loads(sg2_path.read_text())
        suite = json.loads((results / f"{tag}.suite.json").read_text())
        fams_path = results / f"{tag}.families.json"
        trained = set(json.loads(fams_path.read_text())) if fams_path.is_file() else set()
        groups = {g: r for g, r in suite["by_group"].items() if g != SHARED_SG2 and r.get("auc") is not None}
        unseen = {g: r["auc"] for g, r in groups.items() if family_of(g) not in trained}
        seen = [r["auc"] for g, r in groups.items() if family_of(g) in trained]
        o = sg2["overall"]
        out.append(
            f"| {tag} | {', '.join(sorted(trained)) or 'none (self-blended reals)'} | "
            f"{', '.join(f'{g} {v:.3f}' for g, v in sorted(unseen.items())) or '-'} | {_auc(o)} | "
            f"{_num(o, 'tpr_at_fpr1')} | {_num(o, 'ece')} | "
            f"{f'{sum(seen) / len(seen):.3f}' if seen else '-'} | {sg2.get('images_per_s', 0):.0f} |"
        )
    return out


def per_generator(results: Path) -> list[str]:
    """AUC of every run on every generator's crossval samples (the full matrix behind the summary)."""
    runs = {p.name[: -len(".suite.json")]: json.loads(p.read_text()) for p in sorted(results.glob("*.suite.json"))}
    gens = sorted({g for r in runs.values() for g in r["by_group"]})
    out = ["| run | " + " | ".join(gens) + " |", "|---|" + "---|" * len(gens)]
    for tag, r in runs.items():
        cells = [f"{r['by_group'][g]['auc']:.3f}" if g in r["by_group"] else "-" for g in gens]
        out.append(f"| {tag} | " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path)
    a = p.parse_args(argv)
    print("\n".join(rows(a.results)))
    print()
    print("\n".join(per_generator(a.results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
