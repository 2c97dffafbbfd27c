"""Benchmark of one search iteration: DARTS-1st, DARTS-2nd and LeaSE in every hypergradient mode.

  python benchmarks/bench_search_step.py --size tiny                       # smoke (the suite)
  python benchmarks/bench_search_step.py --size full --out experiments/results/bench_full
  python benchmarks/bench_search_step.py --size small --variants lease_hvp,darts_2nd_fd
  python benchmarks/bench_search_step.py --size small --check-hvp          # hvp = exact?

For each variant, in a fresh process (so peak memory is its own): the compile time (the first
iteration minus a compiled one; the pieces are compiled ahead on every core first, as
`lease-search` does, `lease_jax/precompile.py`), the compiled
iteration's median, min and max wall time over `--repeats` runs, the peak RSS of the process
(CPU) or the peak device memory (GPU), the FLOPs of one iteration (XLA's cost analysis of the
whole iteration lowered as one program) and the achieved GFLOP/s. The machine's fp32 matmul rate
is measured in the same run, so every rate is also given as a fraction of it. A variant that
runs past `--timeout` is killed and reported with the time and memory it had reached.

Sizes: tiny (1 cell, C=4, batch 8, 8x8 images: a smoke size, the suite's), small (5 cells,
C=8, batch 16), full (8 cells, C=16, batch 64, the paper's search); images 32x32x3 (CIFAR's) at
small and full, 10 classes, ResNet-18 audience of width 64 at full size (the paper's), 16 at
small; at tiny a ResNet-10 of width 4 (one block a stage, as the tests' tiny config). Writes
`<out>/bench_<size>.json` and `.md` with the machine and date. The persistent compilation cache is off: compile times are real.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SIZES = {  # layers, channels, batch, audience width, audience blocks per stage, image side
    'tiny': (1, 4, 8, 4, 1, 8),
    'small': (5, 8, 16, 16, 2, 32),
    'full': (8, 16, 64, 64, 2, 32),
}
VARIANTS = {  # name: (gamma, mode, base)
    'darts_1st': (0.0, 'first_order', 'darts'),
    'darts_2nd_fd': (0.0, 'finite_difference', 'darts'),
    'darts_2nd_hvp': (0.0, 'hvp', 'darts'),
    'darts_2nd_exact': (0.0, 'exact', 'darts'),
    'lease_first_order': (1.0, 'first_order', 'darts'),
    'lease_fd': (1.0, 'finite_difference', 'darts'),
    'lease_hvp': (1.0, 'hvp', 'darts'),
    'lease_exact': (1.0, 'exact', 'darts'),
    # PC-DARTS (K = 4, edge normalisation): its own first-order search, and LeaSE on it.
    'pcdarts_1st': (0.0, 'first_order', 'pc_darts'),
    'lease_pcdarts_hvp': (1.0, 'hvp', 'pc_darts'),
}


def _config(size: str, variant: str, impl: str, jit_whole: bool):
  from lease_jax.configs import default
  layers, channels, batch, width, blocks, _ = SIZES[size]
  gamma, mode, base = VARIANTS[variant]
  config = default.get_config()
  config.explainer.base = base
  config.search.batch_size, config.search.gamma, config.search.mode = batch, gamma, mode
  config.search.jit_whole_step = jit_whole
  config.explainer.layers, config.explainer.channels = layers, channels
  config.explainer.impl = impl
  config.audience.width, config.audience.blocks_per_stage = width, blocks
  return config


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
  """The machine's fp32 matmul rate (GFLOP/s), best of `repeats`, jitted."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _random_cifar(config, side: int):
  """(search, state, two (train, val) batches) on random CIFAR-like `side`² RGB images."""
  import numpy as np

  from lease_jax import builders, data
  batch = config.search.batch_size
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4 * batch, side, side, 3), dtype=np.uint8)
  source = data.ArraySource(images, rng.integers(0, 10, 4 * batch))
  info = data.DatasetInfo('random', 10, (side, side, 3), data.KNOWN['cifar10'][2],
                          data.KNOWN['cifar10'][3])
  train, val = builders.search_streams(config, info, source)
  search = builders.build_search(config, info, steps_per_epoch=1000)
  batches = [(builders.to_device(train.batch(k)), builders.to_device(val.batch(k)))
             for k in range(2)]
  return search, search.init_state(0), batches


def check_hvp(size: str, impl: str) -> float:
  """The relative error of LeaSE's hvp hypergradient against the exact one (one program) at
  the initial state, at the highest matmul precision (no TF32 on A100/H100)."""
  import jax
  import numpy as np

  from lease_jax import hypergrad, lease
  config = _config(size, 'lease_exact', impl, True)
  search, state, ((train, val), _) = _random_cifar(config, SIZES[size][-1])
  problem = search.spec.problem
  kw = dict(E=state.explainer, A=state.alphas, W=state.audience,
            explainer_state=state.explainer_opt_state, audience_state=state.audience_opt_state,
            train=train, val=val, delta0=lease.virtual_start(search.spec, state, train['image']))
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  with jax.default_matmul_precision('highest'):
    exact = jax.jit(lambda: hypergrad.hypergradient('exact', problem, **kw))()
    hvp = jax.jit(lambda: hypergrad.hypergradient('hvp', problem, **kw))()
  errors = {term: float(np.linalg.norm(flat(getattr(hvp, term)) - flat(getattr(exact, term)))
                        / np.linalg.norm(flat(getattr(exact, term))))
            for term in ('total', 'explainer', 'audience')}
  print(f'hvp against exact at size {size} ({jax.devices()[0].device_kind}): relative error '
        + ', '.join(f'{term} {e:.2e}' for term, e in errors.items()), flush=True)
  return max(errors.values())


def measure(size: str, variant: str, impl: str, jit_whole: bool, repeats: int) -> dict:
  """One variant, in this (child) process."""
  import functools

  import jax

  from lease_jax import lease, precompile

  config = _config(size, variant, impl, jit_whole)
  search, state, batches = _random_cifar(config, SIZES[size][-1])
  step = lease.make_step(search.spec, jit_whole)

  def run(k):
    nonlocal state
    state, metrics = step(state, *batches[k % 2], split_terms=False)
    jax.block_until_ready((state, metrics))

  def first_run():  # as `lease-search` does: the pieces compiled ahead on every core
    if not jit_whole:
      precompile.compile_ahead(step, state, *batches[0], split_terms=False)
    run(0)

  first = _timed(first_run)
  times = [_timed(lambda k=k: run(k + 1)) for k in range(repeats)]
  median = statistics.median(times)
  # The FLOPs of the program that ran: `make_step`'s one program splits the terms whatever it is
  # asked; the pieces ran with `split_terms=False`, counted as the one program they make up.
  lowered = jax.jit(functools.partial(lease.search_step, search.spec,
                                      split_terms=jit_whole)).lower(state, *batches[0])
  cost = lowered.cost_analysis() or {}
  flops = float(cost.get('flops', float('nan')))
  out = {'compile_s': first - median, 'first_s': first, 'median_s': median,
         'min_s': min(times), 'max_s': max(times), 'repeats': repeats, 'flops': flops,
         'gflops_per_s': flops / median / 1e9}
  device = jax.devices()[0]
  if device.platform != 'cpu':
    stats = device.memory_stats() or {}
    out['peak_device_gib'] = stats.get('peak_bytes_in_use', float('nan')) / 2**30
  return out


def _peak_rss_gib(pid: int) -> float:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 2**20
  except OSError:
    pass
  return float('nan')


def run_child(args, variant: str) -> dict:
  """Runs `measure` in a fresh process, watching its peak RSS; kills it at the timeout."""
  command = [sys.executable, __file__, '--child', variant, '--size', args.size, '--impl',
             args.impl, '--repeats', str(args.repeats)] + (['--jit-whole'] if args.jit_whole
                                                           else [])
  env = dict(os.environ, LEASE_JAX_CACHE='')
  start = time.time()
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
  peak = 0.0
  while process.poll() is None:
    peak = max(peak, _peak_rss_gib(process.pid))
    if time.time() - start > args.timeout:
      process.kill()
      process.wait()
      return {'variant': variant, 'status': f'timeout after {args.timeout:.0f} s',
              'peak_rss_gib': peak}
    time.sleep(0.2)
  stdout, stderr = process.communicate()
  lines = [line for line in stdout.splitlines() if line.startswith('{')]
  if process.returncode != 0 or not lines:
    tail = stderr.strip().splitlines()[-1:] or ['(no output)']
    return {'variant': variant, 'status': f'failed ({process.returncode}): {tail[0][:200]}',
            'peak_rss_gib': peak}
  result = json.loads(lines[-1])
  return {'variant': variant, 'status': 'ok', 'peak_rss_gib': peak, **result}


def _table(rows: list[dict], ceiling: float) -> str:
  head = ('| variant | γ | mode | base | compile (s) | median (s) | min–max (s) | '
          'peak RSS (GiB) | GFLOP / iter | GFLOP/s | % of matmul |')
  lines = [head, '|' + '---|' * (head.count('|') - 1)]
  for row in rows:
    gamma, mode, base = VARIANTS[row['variant']]
    if row['status'] != 'ok':
      lines.append(f'| {row["variant"]} | {gamma:g} | {mode} | {base} | {row["status"]} | | | '
                   f'{row["peak_rss_gib"]:.2f} | | | |')
      continue
    rate = row['gflops_per_s']
    device = f' ({row["peak_device_gib"]:.2f} device)' if 'peak_device_gib' in row else ''
    lines.append(
        f'| {row["variant"]} | {gamma:g} | {mode} | {base} | {row["compile_s"]:.1f} | '
        f'{row["median_s"]:.3f} | {row["min_s"]:.3f}–{row["max_s"]:.3f} | '
        f'{row["peak_rss_gib"]:.2f}{device} | {row["flops"] / 1e9:.2f} | {rate:.2f} | '
        f'{100 * rate / ceiling:.1f}% |')
  return '\n'.join(lines)


def write_report(out: str, size: str, header: str, ceiling: float, args, rows, argv) -> None:
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f'bench_{size}.json'), 'w') as f:
    json.dump({'header': header, 'matmul_gflops': ceiling, 'size': size, 'impl': args.impl,
               'jit_whole': args.jit_whole, 'rows': rows}, f, indent=1)
  with open(os.path.join(out, f'bench_{size}.md'), 'w') as f:
    f.write(f'# Search-iteration benchmark, {size}\n\n{header}\n\n{_table(rows, ceiling)}\n\n'
            f'Command: `python benchmarks/bench_search_step.py {" ".join(argv or sys.argv[1:])}`'
            '\n')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', choices=sorted(SIZES), default='tiny')
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated subset of {", ".join(VARIANTS)}')
  parser.add_argument('--impl', default='auto', help="kernels: 'auto' | 'slices' | 'xla'")
  parser.add_argument('--jit-whole', action='store_true',
                      help='one program per iteration instead of jitted pieces')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--timeout', type=float, default=1800, help='seconds per variant')
  parser.add_argument('--out', default='', help='folder for bench_<size>.json / .md')
  parser.add_argument('--check-hvp', action='store_true',
                      help='only compare the hvp hypergradient with the exact one (exit 1 if '
                      'their relative error passes 1e-3)')
  parser.add_argument('--child', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.check_hvp:
    return 0 if check_hvp(args.size, args.impl) <= 1e-3 else 1
  if args.child:
    print(json.dumps(measure(args.size, args.child, args.impl, args.jit_whole, args.repeats)))
    return 0
  variants = [v for v in args.variants.split(',') if v]
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    parser.error(f'unknown variants {unknown}; accepted: {", ".join(VARIANTS)}')

  import jax
  ceiling = matmul_gflops()
  layers, channels, batch, width, blocks, side = SIZES[args.size]
  header = (f'size {args.size}: {layers} cells, C={channels}, batch {batch}, '
            f'ResNet-{2 + 8 * blocks} width {width}, {side}x{side} images; kernels {args.impl}; '
            f'{"one program" if args.jit_whole else "pieces"}; '
            f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
            f'{jax.devices()[0].device_kind}; jax {jax.__version__}; '
            f'{datetime.date.today().isoformat()}; fp32 matmul {ceiling:.1f} GFLOP/s')
  print(header, flush=True)
  rows = []
  for variant in variants:
    rows.append(run_child(args, variant))
    print(json.dumps(rows[-1]), flush=True)
    if args.out:  # after every variant, so a long run killed part way keeps what it measured
      write_report(args.out, args.size, header, ceiling, args, rows, argv)
  print(_table(rows, ceiling))
  return 0 if all(row['status'] == 'ok' for row in rows) else 1


if __name__ == '__main__':
  sys.exit(main())
