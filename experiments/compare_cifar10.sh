#!/usr/bin/env bash
# Exact against approximate hypergradients on CIFAR-10 (JPEG): every run behind
# experiments/results/compare_hypergrads_cifar10/, in order, each resumable (the same command
# skips what is finished and resumes what is not), so it can run in the background across
# sessions:
#
#   nohup bash experiments/compare_cifar10.sh /tmp/cifar10-jpeg runs > compare_cifar10.log 2>&1 &
#
#   1. `lease-compare-grads` along a 190-step hvp search (20 points, every setting of
#      configs/compare_hypergrads_cifar10.py but `exact`, each in its own process);
#   2. the finite difference's error against the radius (experiments/fd_error_curve.py) at
#      three of its points, ReLU and smooth networks, float32 and float64;
#   3. the same search with hvp, finite_difference and first_order at seeds 1 and 2, and hvp at
#      seed 3: each mode against hvp at its seed, hvp against seed 1's (experiments/mode_searches.py);
#   4. `lease-compare-grads` again, which adds `exact` (one program with XLA's kernels, the
#      longest setting: last, so that it holds up nothing else) and rewrites the report.
set -euo pipefail
data="${1:?usage: compare_cifar10.sh DATA_DIR [RUNS_DIR]}"
runs="${2:-runs}"
cd "$(dirname "$0")/.."
out=experiments/results/compare_hypergrads_cifar10
config=lease_jax/configs/compare_hypergrads_cifar10.py
mkdir -p "$out"
compare() {
  python -m lease_jax.compare --config="$config" --workdir="$runs/compare_cifar10" \
      --config.data.data_dir="$data" "$@"
  cp "$runs"/compare_cifar10/compare.{md,csv,json,png} "$out/"
}
echo "== 1. lease-compare-grads without exact ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD))"
compare "--config.compare.settings=('hvp', 'fd_0.001', 'fd_0.01', 'fd_0.1', 'first_order', \
'official_sign', 'darts2_hvp', 'darts2_fd_0.01', 'darts2_first_order')"
echo "== 2. the finite difference's error against r ($(date -u +%FT%TZ))"
python experiments/fd_error_curve.py --config="$config" --config.data.data_dir="$data" \
    --workdir="$runs/compare_cifar10" --points=0,90,190 --out="$out/fd_error_curve"
echo "== 3. the search in three modes ($(date -u +%FT%TZ))"
python experiments/mode_searches.py --data_dir="$data" --workdir="$runs/mode_searches" \
    --results="$out/searches" --seeds=1,2 --control_seeds=3
echo "== 4. lease-compare-grads with exact ($(date -u +%FT%TZ))"
compare
echo "== done ($(date -u +%FT%TZ))"
