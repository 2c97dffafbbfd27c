#!/bin/bash
# lease-train against DARTS's train.py (benchmarks/pytorch_darts_train.py), one run at a time:
# DARTS_V2, C=16, 8 cells, batch 96, a 3-epoch schedule (epoch e at the rate of e on both sides),
# no auxiliary head, no cutout, drop path 0.2 ramped; the first TRAIN_EPOCHS epochs of each seed.
# Resumable: a finished side is skipped; lease-train resumes from its checkpoints.
#   bash experiments/vs_pytorch_train.sh /tmp/cifar10-jpeg /path/to/darts /path/to/torch/python \
#       runs/vs_pytorch_train "1 2" 1
set -euo pipefail
DATA=$1 DARTS=$2 TORCH_PYTHON=$3 OUT=$4 SEEDS=${5:-"1 2"} TRAIN_EPOCHS=${6:-3}
mkdir -p "$OUT"
for seed in $SEEDS; do
  ours=$OUT/ours_seed$seed
  if [ "$(cat "$ours/history.jsonl" 2>/dev/null | wc -l)" -lt "$TRAIN_EPOCHS" ]; then
    lease-train --config=lease_jax/configs/eval_cifar10.py --genotype=DARTS_V2 --workdir="$ours" \
      --config.data.source=image_folder --config.data.data_dir="$DATA" --config.data.workers=2 \
      --config.train.channels=16 --config.train.layers=8 --config.train.epochs=3 \
      --config.train.auxiliary=False --config.train.cutout=0 --config.train.eval_every_epochs=1 \
      --config.seed="$seed" > "$ours.log" 2>&1 &
    pid=$!
    # Stop at the epoch's evaluation when fewer epochs than the schedule's are wanted.
    while kill -0 $pid 2>/dev/null; do
      if [ "$(cat "$ours/history.jsonl" 2>/dev/null | wc -l)" -ge "$TRAIN_EPOCHS" ]; then
        kill -TERM $pid; break
      fi
      sleep 10
    done
    wait $pid || true
  fi
  if [ ! -f "$OUT/pytorch_seed$seed.json" ]; then
    "$TORCH_PYTHON" benchmarks/pytorch_darts_train.py --darts_dir="$DARTS" --data_dir="$DATA" \
      --layers=8 --channels=16 --epochs=3 --train_epochs="$TRAIN_EPOCHS" --seed="$seed" \
      --schedule=lease_jax --out="$OUT/pytorch_seed$seed.json" > "$OUT/pytorch_seed$seed.log" 2>&1
  fi
done
