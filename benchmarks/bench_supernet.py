"""Compile time, compile memory and run time of the supernet's forward+backward and of one
Hessian-vector product, per size. Each measurement runs in a fresh process (peak RSS is per
process), so compile memory is the RSS growth during compilation alone.

  python benchmarks/bench_supernet.py --sizes tiny,small,full --out experiments/results

Programs:
  fwd_bwd  ∇_(E, A) CE(f(x; E, A), t), one jit.
  hvp      ∇_A <∇_E CE(f(x; E, A), t), v>  as jax.jvp of jax.grad (DARTS's second-order product).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SIZES = {  # layers, channels, batch, image size
    'tiny': (3, 4, 8, 32),
    'small': (5, 8, 16, 32),
    'full': (8, 16, 64, 32),
}
PROGRAMS = ('fwd_bwd', 'hvp')


def _rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(size: str, program: str, impl: str, repeats: int) -> dict:
  """Runs in the child process."""
  import jax
  import jax.numpy as jnp

  from lease_jax.models import explainer

  layers, channels, batch, image = SIZES[size]
  model = explainer.Supernet(num_classes=10, channels=channels, layers=layers, impl=impl)
  _, apply = explainer.make_explainer(model)
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, image, image, 3))
  labels = jnp.arange(batch) % 10
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), explainer.init_alphas(
      jax.random.PRNGKey(0)), x)['params']
  params = jax.tree.map(lambda s: 0.1 * jnp.ones(s.shape, s.dtype), params)
  alphas = explainer.init_alphas(jax.random.PRNGKey(1))

  def loss(e, a):
    logits = apply(e, a, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

  if program == 'fwd_bwd':
    fn, args = jax.jit(jax.grad(loss, (0, 1))), (params, alphas)
  else:
    fn = jax.jit(lambda e, a, v: jax.jvp(lambda q: jax.grad(loss, 1)(q, a), (e,), (v,))[1])
    args = (params, alphas, params)
  base = _rss_gib()
  start = time.perf_counter()
  lowered = fn.lower(*args)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  compile_gib = _rss_gib() - base
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  flops = (compiled.cost_analysis() or {}).get('flops', float('nan'))
  run_s = statistics.median(times)
  return {'size': size, 'program': program, 'impl': impl, 'compile_s': compile_s,
          'compile_rss_gib': compile_gib, 'run_s': run_s, 'run_min_s': min(times),
          'run_max_s': max(times), 'peak_rss_gib': _rss_gib(), 'gflop': flops / 1e9,
          'gflop_per_s': flops / 1e9 / run_s}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='tiny,small')
  parser.add_argument('--programs', default=','.join(PROGRAMS))
  parser.add_argument('--impl', default='auto', help="kernels: auto | slices | xla")
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default='', help='directory for bench_supernet.{json,md}')
  parser.add_argument('--child', default='', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    size, program = args.child.split(':')
    print(json.dumps(measure(size, program, args.impl, args.repeats)))
    return
  rows = []
  header = (f'{"size":6} {"program":8} {"compile s":>10} {"compile GiB":>12} {"run s":>8} '
            f'{"peak GiB":>9} {"GFLOP":>8} {"GFLOP/s":>8}')
  print(header)
  for size in args.sizes.split(','):
    for program in args.programs.split(','):
      result = subprocess.run(
          [sys.executable, __file__, '--child', f'{size}:{program}', '--impl', args.impl,
           '--repeats', str(args.repeats)], capture_output=True, text=True)
      if result.returncode:
        print(f'{size:6} {program:8} FAILED: {result.stderr.strip().splitlines()[-1]}')
        continue
      row = json.loads(result.stdout.strip().splitlines()[-1])
      rows.append(row)
      print(f'{size:6} {program:8} {row["compile_s"]:10.1f} {row["compile_rss_gib"]:12.2f} '
            f'{row["run_s"]:8.3f} {row["peak_rss_gib"]:9.2f} {row["gflop"]:8.1f} '
            f'{row["gflop_per_s"]:8.1f}', flush=True)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'bench_supernet.json'), 'w') as f:
      json.dump({'date': time.strftime('%Y-%m-%d'), 'machine': _machine(), 'rows': rows}, f,
                indent=1)
    with open(os.path.join(args.out, 'bench_supernet.md'), 'w') as f:
      f.write(f'# Supernet compile and run ({time.strftime("%Y-%m-%d")}, {_machine()})\n\n')
      f.write('| size | program | kernels | compile s | compile GiB | run s (median) | '
              'peak RSS GiB | GFLOP | GFLOP/s |\n|---|---|---|---|---|---|---|---|---|\n')
      for r in rows:
        f.write(f'| {r["size"]} | {r["program"]} | {r["impl"]} | {r["compile_s"]:.1f} | '
                f'{r["compile_rss_gib"]:.2f} | {r["run_s"]:.3f} | {r["peak_rss_gib"]:.2f} | '
                f'{r["gflop"]:.1f} | {r["gflop_per_s"]:.1f} |\n')


def _machine() -> str:
  import platform
  cpu = platform.processor() or platform.machine()
  return f'{os.cpu_count()} CPU cores, {cpu}'


if __name__ == '__main__':
  main()
