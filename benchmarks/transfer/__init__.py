"""Transfer protocols, end to end through ``forensics scan``: does a model's verdict hold outside its training data?

In-distribution crossval numbers say little about the files users bring: they arrive re-encoded, resized and from
generators no folder here holds. These protocols score *raw files* exactly as ``scan`` does (decode, face
detection, crop by the model's preprocessing, calibrated P(fake), the model's own threshold presets) and report:

- ``shortcuts``: the same real photos raw, JPEG q75, JPEG q50 and 0.5x-downscaled: median P(fake) and its shift
  from raw, and the share flagged under ``fpr1`` / ``fpr01`` (a model that learned "compressed = fake" flags more
  reals after JPEG); then fakes vs those reals with *matched* delivery (both re-encoded at q75, both at q50, both
  downscaled): AUC with a stratified bootstrap interval, and precision under ``fpr1`` at realistic fake
  prevalences (1 %, 10 %, 50 %).
- ``real-sources``: the share of each real source's photos (and of UTKFace's race / gender groups) flagged under
  ``fpr1`` and ``fpr01``, files as they are: a preset fitted on one source's reals may not hold on another's.
- ``external-dev``: the evaluation-only ``external_dev`` pairs (face swaps vs their reals, splices vs theirs,
  a commercial GAN vs studio portraits) and the share of each real set flagged under ``fpr1``. Never trained,
  calibrated or selected on.
- ``unseen-decoders`` (with ``--recon``): crossval reals vs their reconstructions through each of the project's
  autoencoders (nearest, transposed-conv, pixel-shuffle decoders), both sides raw / JPEG q75 / halved: does a
  decoder trace the model never trained on still read as fake? A test, never a selection input.

``--split val`` runs ``shortcuts`` and ``real-sources`` on the *validation* files instead (the 10 % of each shared
training folder that ``data import`` hashes into ``val``): that is the split candidates are selected on, so the
``crossval`` numbers stay a test. Every result records the model (name + weights sha256) and the run record
(command, commit, environment, start time: :mod:`benchmarks.record`). Goals (issue #17): flag rate <= 2 % under
``fpr1`` on every real variant, median shift <= 0.05, matched AUC >= 0.95; external pairs >= 0.85 with <= 2 % of
reals flagged.

The package, one job per module (``python -m benchmarks.transfer`` runs :mod:`.cli`):

- :mod:`.delivery`: the delivery variants a file is written under, and scoring files through ``scan``;
- :mod:`.metrics`: flag rates, pair AUCs with intervals, precision at prevalences, the ``transfer-val`` summary;
- :mod:`.protocols`: the protocols themselves (which files, which deliveries, which numbers);
- :mod:`.evaluate`: one model through the chosen protocols -> ``results.json`` (with the run record) + ``report.md``;
- :mod:`.reports`: markdown from results (a model's report, the tables, the index, the README block);
- :mod:`.selection`: the declared rules that choose the model to ship;
- :mod:`.cli`: the options.

Every name the tests, docs and the model card cite (``benchmarks.transfer.select``, ``.select_transfer``,
``.pair_metrics``...) is re-exported here.

Example::

    python -m benchmarks.transfer --model default --label default-v3 --out benchmarks/results/transfer/default-v3
    python -m benchmarks.transfer --table benchmarks/results/transfer   # the comparison table of every candidate
"""

from __future__ import annotations

from benchmarks.transfer.cli import main
from benchmarks.transfer.delivery import (
    _KERNELS,
    SCAN_OVERRIDES,
    _quality,
    _score,
    _variant_step,
    _write_variant,
)
from benchmarks.transfer.evaluate import (
    _scan_settings,
    run,
)
from benchmarks.transfer.metrics import (
    N_BOOT,
    PREVALENCES,
    Pair,
    RealVariant,
    _precision,
    flag_rates,
    pair_metrics,
    real_variants,
    reals_summary,
    transfer_val_summary,
)
from benchmarks.transfer.protocols import (
    DECODER_VARIANTS,
    EXTERNAL_PAIRS,
    FFHQ,
    NEEDS_RECON,
    PROTOCOLS,
    SG2,
    TV_CROSS,
    TV_MATCHED,
    TV_REAL,
    TV_VARIANTS,
    UTK,
    VAL_PROTOCOLS,
    _image_side,
    _matched_parents,
    _sample,
    external_dev,
    real_sources,
    shortcuts,
    split_files,
    transfer_val,
    transfer_val_files,
    unseen_decoders,
    watermark,
)
from benchmarks.transfer.reports import (
    REAL_SOURCES_NOTE,
    RESULTS,
    _flags,
    _pair_table,
    _results,
    _tv_grid,
    comparison_table,
    external_table,
    index_text,
    readme_block,
    render,
    transfer_val_table,
    write_index,
)
from benchmarks.transfer.selection import (
    FUSE_MAX_AUC_LOSS,
    FUSE_MAX_SHIFT_GAIN,
    MAX_VAL_FLAG,
    MAX_VAL_SHIFT,
    TV_MAX_FLAG,
    TV_TIE,
    _fused_upgrade,
    flag_tie_band,
    select,
    select_transfer,
)
from forensics_core.errors import DataError

__all__ = [
    "DECODER_VARIANTS",
    "DataError",
    "EXTERNAL_PAIRS",
    "FFHQ",
    "FUSE_MAX_AUC_LOSS",
    "FUSE_MAX_SHIFT_GAIN",
    "MAX_VAL_FLAG",
    "MAX_VAL_SHIFT",
    "NEEDS_RECON",
    "N_BOOT",
    "PREVALENCES",
    "PROTOCOLS",
    "Pair",
    "REAL_SOURCES_NOTE",
    "RESULTS",
    "RealVariant",
    "SCAN_OVERRIDES",
    "SG2",
    "TV_CROSS",
    "TV_MATCHED",
    "TV_MAX_FLAG",
    "TV_REAL",
    "TV_TIE",
    "TV_VARIANTS",
    "UTK",
    "VAL_PROTOCOLS",
    "_KERNELS",
    "_flags",
    "_fused_upgrade",
    "_image_side",
    "_matched_parents",
    "_pair_table",
    "_precision",
    "_quality",
    "_results",
    "_sample",
    "_scan_settings",
    "_score",
    "_tv_grid",
    "_variant_step",
    "_write_variant",
    "comparison_table",
    "external_dev",
    "external_table",
    "flag_rates",
    "reals_summary",
    "flag_tie_band",
    "index_text",
    "main",
    "pair_metrics",
    "readme_block",
    "real_sources",
    "real_variants",
    "render",
    "run",
    "select",
    "select_transfer",
    "shortcuts",
    "split_files",
    "transfer_val",
    "transfer_val_files",
    "transfer_val_summary",
    "transfer_val_table",
    "unseen_decoders",
    "watermark",
    "write_index",
]
