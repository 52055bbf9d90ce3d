#!/usr/bin/env bash
# Build the GAN + diffusion suite dataset that the held-out-family detector results use.
#
#   FORENSICS_WORK=/work/scratch bash benchmarks/build_suite_dataset.sh [N_TRAIN] [N_TEST]
#
# For every shipped reference generator: N_TRAIN samples without a split (the import hashes them into train / val,
# 90 / 10) and N_TEST with split "crossval" (never trained on), written by `forensics gan sample`; edit families (cyclegan, inpaint, srgan, ae-recon,
# sdedit, ldm-inpaint) edit real faces from the imported shared set, train and test portions from disjoint faces.
# Then `forensics data import --layout manifest --align` passes every sample through the same alignment, 128 px
# resize and JPEG q90 as the real faces of $W/data/shared128, keeping each row's provenance.
# Needs $W/data/shared128 (forensics data import ../shared/data --layout labels-csv --out $W/data/shared128
# --align --size 128 --jpeg-quality 90).
set -euo pipefail
W=${FORENSICS_WORK:?set FORENSICS_WORK to a scratch folder}
N_TRAIN=${1:-400}
N_TEST=${2:-150}
REAL=$W/data/shared128
read -r -a FAMILIES <<< "${FAMILIES:-dcgan dcgan-k3 pixelshuffle resgan stylegan2 cgan cyclegan inpaint srgan ae-recon ldm sdedit ldm-inpaint}"

# disjoint real inputs for the edit families: train-split UTKFace + FFHQ faces, hashed into two folders
python - "$REAL" "$W/edit-inputs" "$N_TRAIN" "$N_TEST" <<'EOF'
import sys
from pathlib import Path
from forensics.dataset import read_manifest

real, out, n_train, n_test = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = sorted((r for r in read_manifest(real) if r.label == "real" and r.split == "train"), key=lambda r: r.sha256)
for name, part in (("train", rows[:n_train]), ("crossval", rows[n_train:n_train + n_test])):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    for r in part:
        link = d / Path(r.path).name
        if not link.exists():
            link.symlink_to(real / r.path)
EOF

for fam in "${FAMILIES[@]}"; do
  for part in train crossval; do
    n=$N_TRAIN; seed=1; split=""
    if [ "$part" = crossval ]; then n=$N_TEST; seed=2; split=crossval; fi
    extra=()
    case $fam in
      cyclegan|inpaint|srgan|ae-recon|sdedit|ldm-inpaint) extra=(--input "$W/edit-inputs/$part") ;;
    esac
    forensics gan sample "$fam" --n "$n" --out "$W/fakes/$fam-$part" --split "$split" --seed "$seed" "${extra[@]}"
  done
done

[ -n "${SKIP_IMPORT:-}" ] && exit 0
forensics data import "$W/fakes" --layout manifest --out "$W/data/suite128" --align --size 128 --jpeg-quality 90 \
  --workers 2
forensics data info "$W/data/suite128"
