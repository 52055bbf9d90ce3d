#!/usr/bin/env bash
# Build the GAN + diffusion suite dataset that the held-out-family detector results use.
#
#   FORENSICS_WORK=/work/scratch bash benchmarks/build_suite_dataset.sh [N_TRAIN] [N_TEST]
#
# For every shipped reference generator: N_TRAIN samples without a split (the import hashes them into train / val,
# 90 / 10) and N_TEST with split "crossval" (never trained on), written losslessly (PNG) by `forensics gan sample`;
# edit families (cyclegan, inpaint, srgan, the autoencoders, sdedit, ldm-inpaint) edit aligned real faces of the imported
# shared set: the train portion from its *train* reals, the crossval portion from its *crossval* reals, so a
# crossval fake never has a parent the detector trained on.
# Then `forensics data import --layout manifest --align --store $STORE` passes every sample through the same
# face detection as the real faces of $REAL, keeping each row's provenance.
#
# Default (STORE=source): REAL=$W/data/shared-src, made by
#   forensics data import ../shared/data --layout labels-csv --out $W/data/shared-src --align --size 128 --store source
# and the suite goes to $W/data/suite-src: lossless source regions that `detector train --delivery mixed` gives a
# delivery history before cropping. STORE=aligned REAL=$W/data/shared128 rebuilds the older JPEG q90 crops.
set -euo pipefail
W=${FORENSICS_WORK:?set FORENSICS_WORK to a scratch folder}
N_TRAIN=${1:-400}
N_TEST=${2:-150}
STORE=${STORE:-source}
REAL=${REAL:-$W/data/shared-src}
if [ "$STORE" = source ]; then OUT=${OUT:-$W/data/suite-src}; else OUT=${OUT:-$W/data/suite128}; fi
read -r -a FAMILIES <<< "${FAMILIES:-dcgan dcgan-k3 pixelshuffle resgan stylegan2 cgan cyclegan inpaint srgan ae-recon ae-convT ae-shuffle ldm sdedit ldm-inpaint}"

# disjoint real inputs for the edit families: aligned 128 px crops (PNG) of train reals and of crossval reals
python - "$REAL" "$W/edit-inputs" "$N_TRAIN" "$N_TEST" <<'EOF'
import sys
from pathlib import Path

import cv2

from detectors.data import ByteCache, face_view, load_items

real, out, n_train, n_test = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for name, split, n in (("train", "train", n_train), ("crossval", "crossval", n_test)):
    items, _ = load_items([str(real)], "eval", splits=(split,))
    items = sorted((it for it in items if it.y == 0), key=lambda it: it.sha256)[:n]
    if len(items) < n:
        sys.exit(f"{real}: only {len(items)} {split} reals for {n} edit inputs")
    cache, d = ByteCache(items), out / name
    d.mkdir(parents=True, exist_ok=True)
    for i, it in enumerate(items):
        dst = d / f"{it.sha256[:16]}.png"
        if not dst.exists():
            cv2.imwrite(str(dst), cv2.cvtColor(face_view(cache.image(i), it, 128), cv2.COLOR_RGB2BGR))
EOF

for fam in "${FAMILIES[@]}"; do
  for part in train crossval; do
    n=$N_TRAIN; seed=1; split=""
    if [ "$part" = crossval ]; then n=$N_TEST; seed=2; split=crossval; fi
    extra=()
    case $fam in
      cyclegan|inpaint|srgan|ae-recon|ae-convT|ae-shuffle|sdedit|ldm-inpaint) extra=(--input "$W/edit-inputs/$part") ;;
    esac
    forensics gan sample "$fam" --n "$n" --out "$W/fakes/$fam-$part" --split "$split" --seed "$seed" "${extra[@]}"
  done
done

[ -n "${SKIP_IMPORT:-}" ] && exit 0
forensics data import "$W/fakes" --layout manifest --out "$OUT" --align --size 128 --jpeg-quality 90 \
  --store "$STORE" --workers 2
forensics data info "$OUT"
