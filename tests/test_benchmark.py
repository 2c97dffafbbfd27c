"""Smoke test of the benchmarks through `benchmarks/gpu_check.sh --size tiny` (no timing
assertions: speed is measured by the scripts by hand, `bench_search_step.py --size full`)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_runs_for_tiny_on_cpu(tmp_path):
  # The accelerator path (XLA kernels, one program per iteration) on CPU: hvp = exact, then the
  # three program shapes (first order, the ±r pair, the hvp chain); the suite's fast-compile
  # setting keeps it short.
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  result = subprocess.run(['bash', os.path.join(ROOT, 'benchmarks', 'gpu_check.sh'), '--size',
                           'tiny', str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=1200)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert 'hvp against exact at size tiny' in result.stdout
  rows = []
  for part in ('modes', 'throughput'):
    report = json.loads((tmp_path / part / 'bench_tiny.json').read_text())
    assert report['matmul_gflops'] > 0 and report['jit_whole'] and report['impl'] == 'xla'
    rows += report['rows']
  assert [row['variant'] for row in rows] == ['darts_1st', 'darts_2nd_fd', 'lease_hvp']
  for row in rows:
    assert row['status'] == 'ok' and row['median_s'] > 0 and row['flops'] > 0
    assert row['peak_rss_gib'] > 0
  # LeaSE's iteration does more work than DARTS-2nd's, which does more than DARTS-1st's.
  flops = {row['variant']: row['flops'] for row in rows}
  assert flops['lease_hvp'] > flops['darts_2nd_fd'] > flops['darts_1st']
  assert '| lease_hvp |' in (tmp_path / 'throughput' / 'bench_tiny.md').read_text()


def test_bench_vs_pytorch_refuses_a_folder_without_the_darts_code(tmp_path):
  # The comparison needs the user's checkout of quark0/darts: a wrong folder is one line, before
  # anything runs (the comparison itself needs PyTorch and a quiet machine: run by hand).
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks',
                                                        'bench_vs_pytorch_darts.py'),
                           f'--darts_dir={tmp_path}'], capture_output=True, text=True, timeout=60)
  assert result.returncode == 2
  assert f'--darts_dir={tmp_path}: no cnn/architect.py there' in result.stderr
  assert not list(tmp_path.iterdir())
