#!/usr/bin/env bash
# Exact against approximate hypergradients on CIFAR-10 (JPEG): every run behind
# experiments/results/compare_hypergrads_cifar10/, in order, each resumable (the same command
# skips what is finished and resumes what is not), so it can run in the background across
# sessions:
#
#   nohup bash experiments/compare_cifar10.sh /tmp/cifar10-jpeg runs > compare_cifar10.log 2>&1 &
#
#   1. `lease-compare-grads` along a 190-step hvp search (20 points, every setting of
#      configs/compare_hypergrads_cifar10.py, each in its own process);
#   2. the finite difference's error against the radius (experiments/fd_error_curve.py) at
#      three of its points, ReLU and smooth networks, float32 and float64;
#   3. the same search with hvp, finite_difference and first_order (experiments/mode_searches.py).
set -euo pipefail
data="${1:?usage: compare_cifar10.sh DATA_DIR [RUNS_DIR]}"
runs="${2:-runs}"
cd "$(dirname "$0")/.."
out=experiments/results/compare_hypergrads_cifar10
config=lease_jax/configs/compare_hypergrads_cifar10.py
mkdir -p "$out"
echo "== 1. lease-compare-grads ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD))"
python -m lease_jax.compare --config="$config" --workdir="$runs/compare_cifar10" \
    --config.data.data_dir="$data"
cp "$runs"/compare_cifar10/compare.{md,csv,json,png} "$out/"
echo "== 2. the finite difference's error against r ($(date -u +%FT%TZ))"
python experiments/fd_error_curve.py --config="$config" --config.data.data_dir="$data" \
    --workdir="$runs/compare_cifar10" --points=0,90,190 --out="$out/fd_error_curve"
echo "== 3. the search in three modes ($(date -u +%FT%TZ))"
python experiments/mode_searches.py --data_dir="$data" --workdir="$runs/mode_searches" \
    --results="$out/searches"
echo "== done ($(date -u +%FT%TZ))"
