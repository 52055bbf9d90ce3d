#!/usr/bin/env bash
# Held-out-family detector results (benchmarks/results/detectors.md, "Held-out family"):
#
#   FORENSICS_WORK=/work/scratch bash benchmarks/heldout_detectors.sh [MINUTES] [DETECTOR...]
#
# Every detector trains on the real faces + fakes of $W/data/shared128 and $W/data/suite128 (built by
# benchmarks/build_suite_dataset.sh) with the family HELD left out (default stylegan2: that drops the project's own
# stylegan2 *and* the shared thispersondoesnotexist StyleGAN2 train split), then is scored on
#   - the held-out family's crossval samples and every other family's, vs the FFHQ crossval reals;
#   - the shared StyleGAN2 crossval vs FFHQ crossval (both normalised by the import, never trained on).
# A second pair of npr runs answers the diffusion question: trained on GAN families only vs GAN + the other diffusion
# families, scored on the held-out `ldm` family.
set -euo pipefail
W=${FORENSICS_WORK:?set FORENSICS_WORK to a scratch folder}
MIN=${1:-6}
shift || true
if [ $# -gt 0 ]; then DETECTORS=("$@"); else DETECTORS=(npr timm spectrum gan-disc blend ensemble diffusion); fi
HELD=${HELD:-stylegan2}
OUT=$W/detectors/heldout
RES=benchmarks/results/heldout
mkdir -p "$OUT" "$RES"
DATA=(--data "$W/data/shared128" --data "$W/data/suite128")
VAL=(--val "$W/data/shared128" --val "$W/data/suite128")
COMMON=(--res 64 --batch 32 --max-minutes "$MIN" --epochs 100 --threads "${THREADS:-1}" --augment default
        --calibration temperature --out "$OUT")

train_eval() {  # train_eval TAG DETECTOR [options...]: train (skipped when done), then score on both crossvals
  local tag=$1; shift
  if [ ! -f "$OUT/$tag.model" ]; then
    forensics detector train "$@" "${DATA[@]}" "${VAL[@]}" "${COMMON[@]}" | tail -1 > "$OUT/$tag.model.tmp"
    mv "$OUT/$tag.model.tmp" "$OUT/$tag.model"
  fi
  local model
  model=$(cat "$OUT/$tag.model")
  python - "$model" > "$RES/$tag.families.json" <<'EOF'
import json, sys
from detectors.registry import DETECTORS
card = json.load(open(sys.argv[1] + "/model.json"))
print(json.dumps(card["training"]["families"] if DETECTORS.get(card["detector"]).obj.needs_fakes else []))
EOF
  forensics detector eval "$model" --data "$W/data/suite128" --data "$W/data/shared128" --split crossval --group-by generator \
    --json --bootstrap 1000 > "$RES/$tag.suite.json.tmp"
  mv "$RES/$tag.suite.json.tmp" "$RES/$tag.suite.json"
  forensics detector eval "$model" --data "$W/data/shared128" --split crossval --json --bootstrap 1000 \
    > "$RES/$tag.sg2.json.tmp"
  mv "$RES/$tag.sg2.json.tmp" "$RES/$tag.sg2.json"
}

for det in "${DETECTORS[@]}"; do
  case $det in
    timm) train_eval "timm-without-$HELD" timm --backbone resnet18 --exclude-family "$HELD" ;;
    gan-disc) train_eval "gan-disc-without-$HELD" gan-disc --init-from-gan dcgan --exclude-family "$HELD" ;;
    blend) train_eval blend blend ;;  # trained on reals only (self-blended images): no family to leave out
    diffusion)
      train_eval npr-gan-only-without-ldm npr --exclude-family ldm --exclude-family sdedit --exclude-family ldm-inpaint \
        --exclude-family ae-recon
      train_eval npr-gan+diffusion-without-ldm npr --exclude-family ldm ;;
    *) train_eval "$det-without-$HELD" "$det" --exclude-family "$HELD" ;;
  esac
done
python -m benchmarks.heldout "$RES"
