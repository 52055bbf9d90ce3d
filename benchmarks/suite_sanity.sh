#!/usr/bin/env bash
# The suite's sanity row: train `blend` on real faces only, then score it on every suite family (crossval) against
# the FFHQ crossval reals (with and without resolution-matched reals) and the UTKFace val reals (the source the noise
# GANs learned from). A clean suite would score near 0.5 when matched.
#
#   FORENSICS_WORK=/work/scratch bash benchmarks/suite_sanity.sh [MAX_MINUTES]
#
# Needs $W/data/shared-src and $W/data/suite-src (benchmarks/build_suite_dataset.sh). CPU-friendly: one thread,
# MAX_MINUTES (default 5) of training at 64 px. Writes benchmarks/results/suite-sanity{,-raw,-utk}.
set -euo pipefail
W=${FORENSICS_WORK:?set FORENSICS_WORK to a scratch folder}
MINUTES=${1:-5}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
REALS=$W/data/shared-src-reals-train
MODEL=$W/detectors/models/blend-reals-only

# a manifest view of the shared set's train reals (absolute paths, nothing copied): no fake reaches training
python - "$W/data/shared-src" "$REALS" <<'PY'
import sys
from dataclasses import replace
from pathlib import Path

from forensics_core.dataset import read_manifest, write_manifest

src, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = [replace(r, path=str((src / r.path).resolve())) for r in read_manifest(src)
        if r.label == "real" and r.split in ("train", "")]
out.mkdir(parents=True, exist_ok=True)
write_manifest(out, rows)
print(f"{out}: {len(rows)} train reals")
PY

if [ ! -f "$MODEL/model.json" ]; then
  rm -rf "$W/detectors/runs/blend-reals-only"
  forensics detector train blend --data "$REALS" --val "$W/data/shared-src" --res 64 --epochs 100 \
    --max-minutes "$MINUTES" --threads 1 --device cpu --out "$W/detectors/runs/blend-reals-only"
  mkdir -p "$(dirname "$MODEL")"
  cp -r "$(ls -d "$W"/detectors/runs/blend-reals-only/*/model | tail -1)" "$MODEL"
fi
for name in suite-sanity suite-sanity-raw suite-sanity-utk; do
  forensics bench run "benchmarks/configs/$name.yaml" --out "benchmarks/results/$name" --device cpu --workers 1
done
