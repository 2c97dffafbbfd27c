"""Smoke test of the search-iteration benchmark (no timing assertions: speed is measured by the
script by hand, `benchmarks/bench_search_step.py --size full`)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_runs_for_tiny(tmp_path):
  # Three variants cover the three program shapes (first order, the ±r pair, the hvp chain);
  # the suite's fast-compile setting keeps it short.
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'benchmarks', 'bench_search_step.py'), '--size=tiny',
       '--variants=darts_1st,darts_2nd_fd,lease_hvp', '--repeats=2', f'--out={tmp_path}'],
      env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  report = json.loads((tmp_path / 'bench_tiny.json').read_text())
  assert report['matmul_gflops'] > 0
  assert [row['variant'] for row in report['rows']] == ['darts_1st', 'darts_2nd_fd', 'lease_hvp']
  for row in report['rows']:
    assert row['status'] == 'ok' and row['median_s'] > 0 and row['flops'] > 0
    assert row['peak_rss_gib'] > 0
  # LeaSE's iteration does more work than DARTS-1st's.
  flops = {row['variant']: row['flops'] for row in report['rows']}
  assert flops['lease_hvp'] > flops['darts_2nd_fd'] > flops['darts_1st']
  assert '| lease_hvp |' in (tmp_path / 'bench_tiny.md').read_text()
