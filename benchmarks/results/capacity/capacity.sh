#!/usr/bin/env bash
# Capacity at an equal CPU budget, all from scratch, same data / delivery / crop / val (issue #17 item 5).
# The three run side by side on 2 cores (each about 2/3 of a core for MIN wall-minutes).
set -u
cd "$(git rev-parse --show-toplevel)"
W=${FORENSICS_WORK:?set FORENSICS_WORK}; MIN=${1:-27}; mkdir -p "$W/logs"
COMMON="--set crop=native --data $W/data/shared-src --data $W/data/suite-ae-src --val $W/data/shared-src --val $W/data/suite-ae-src --delivery platform --epochs 200 --max-minutes $MIN --threads 1 --patience 100"
OMP_NUM_THREADS=1 forensics detector train --recipe default --set residual=luma --set chroma=half $COMMON \
  --out $W/detectors/runs-CAP-npr044 > $W/logs/CAP-npr044.log 2>&1 &
OMP_NUM_THREADS=1 forensics detector train --recipe default --set residual=luma --set chroma=half \
  --set "widths=[64,128,256,384]" $COMMON --out $W/detectors/runs-CAP-npr35 > $W/logs/CAP-npr35.log 2>&1 &
OMP_NUM_THREADS=1 forensics detector train timm --backbone resnet18 --res 128 --batch 32 --lr 1e-3 --steps-per-epoch 150 \
  --augment flip --match-res --calibration temperature --fp16 $COMMON \
  --out $W/detectors/runs-CAP-resnet18 > $W/logs/CAP-resnet18.log 2>&1 &
wait
