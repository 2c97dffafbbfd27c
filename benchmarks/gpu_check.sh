#!/usr/bin/env bash
# The accelerator check: one prepared script for anyone with a GPU (or TPU), ~8 minutes on one.
#
#   bash benchmarks/gpu_check.sh [--size full|tiny] [OUT]     (default: full, OUT=gpu_check)
#
# Prints, with the accelerator's defaults (XLA's kernels, the whole iteration as one program):
#   1. hvp = exact: LeaSE's hvp hypergradient against the exact one at the small size (tiny with
#      --size tiny), at the highest matmul precision; fails if their relative error passes 1e-3;
#   2. DARTS-1st, DARTS-2nd and LeaSE's first-order, finite-difference and exact modes: compile
#      time, iteration time and peak device memory at the paper's size (8 cells, C=16, batch 64,
#      ResNet-18 width 64), random CIFAR-shaped data, each in its own process;
#   3. LeaSE's hvp mode the same way over 100 iterations: its median iteration is the throughput.
# --size tiny (8x8 images, a ResNet-10 audience, one iteration each) runs the same steps on CPU in a
# few minutes, most of it compiling (the test suite does).
set -euo pipefail
cd "$(dirname "$0")/.."
size=full
if [[ "${1:-}" == "--size" ]]; then size="$2"; shift 2; fi
out="${1:-gpu_check}"
case "$size" in
  full) check=small; variants=darts_1st,darts_2nd_fd,lease_first_order,lease_fd,lease_exact
        repeats=5; steps=100; timeout=150 ;;
  tiny) check=tiny; variants=darts_1st,darts_2nd_fd; repeats=1; steps=1; timeout=600 ;;
  *) echo "gpu_check.sh: --size $size; accepted: full, tiny" >&2; exit 2 ;;
esac
bench() { python benchmarks/bench_search_step.py --impl=xla --jit-whole "$@"; }
echo "== 1. hvp against exact ($check size)"
bench --size="$check" --check-hvp
echo "== 2. the modes at size $size: compile, iteration, peak memory (LeaSE hvp: 3.)"
bench --size="$size" --variants="$variants" --repeats="$repeats" --timeout="$timeout" --out="$out/modes"
echo "== 3. LeaSE (hvp) at size $size, iterations: $steps"
bench --size="$size" --variants=lease_hvp --repeats="$steps" --timeout=600 --out="$out/throughput"
echo "gpu_check.sh: done; tables in $out/modes and $out/throughput"
