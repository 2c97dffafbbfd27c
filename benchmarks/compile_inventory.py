"""Where compile time goes: every program a search compiles before its iterations run.

  python benchmarks/compile_inventory.py --job default --out experiments/results/compile_inventory
  python benchmarks/compile_inventory.py --job lease_hvp_full --out ...

Runs the job's first `--steps` iterations (with the epoch-end outputs that a first epoch adds:
the explanation pictures) with the persistent compilation cache off, and lists each XLA
compilation in the order it happened: the program's name, its argument shapes (abridged), the
size of its HLO before and after optimisation (instructions, from an XLA dump), its compile
seconds, and the process's peak RSS once it was compiled (a compile that raised the peak shows
as a step up: XLA's compile memory). Writes `inventory_<job>.md` and `.json` with the machine
and its fp32 matmul rate (measured after the job: a rate well below the machine's quiet one
means another process shared the cores).

Jobs: `default` (the README's main job: configs/default.py as shipped), `lease_hvp_full` (the
paper's size: 8 cells, C=16, batch 64, ResNet-18 width 64, random CIFAR-shaped data).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import logging
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time

JOBS = ('default', 'lease_hvp_full')
_COMPILING = re.compile(r'Compiling (\S+) with global shapes and types (.*?)\. Argument mapping',
                        re.S)
_FINISHED = re.compile(r'Finished XLA compilation of (.+?) in ([0-9.eE+-]+) sec')


class _Recorder(logging.Handler):
  """Collects the compilations JAX reports with `jax_log_compiles`."""

  def __init__(self):
    super().__init__(level=logging.DEBUG)
    self.programs: list[dict] = []
    self._shapes: dict[str, str] = {}

  def emit(self, record):
    message = record.getMessage()
    found = _COMPILING.search(message)
    if found:
      self._shapes[found.group(1)] = found.group(2)
      return
    found = _FINISHED.search(message)
    if found:
      name = found.group(1).split(' ')[-1]
      shapes = self._shapes.get(name, '')
      self.programs.append({
          'name': name, 'compile_s': float(found.group(2)),
          'shapes': shapes if len(shapes) <= 160 else shapes[:157] + '...',
          'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
          'finished_at_s': time.time()})


def _job_config(job: str):
  from lease_jax.configs import default
  config = default.get_config()
  if job == 'lease_hvp_full':
    config.explainer.update(dict(layers=8, channels=16))
    config.audience.width = 64
    config.search.update(dict(batch_size=64, mode='hvp'))
  return config


def run_job(job: str, steps: int) -> tuple[list[dict], float]:
  """Compiles and runs the job's first iterations; (programs, seconds to the first step)."""
  import jax
  import numpy as np

  from lease_jax import builders, data, lease
  config = _job_config(job)
  if job == 'default':
    info, source, _ = data.load_sources(config.data)
  else:
    rng = np.random.default_rng(0)
    n = 8 * config.search.batch_size
    source = data.ArraySource(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                              rng.integers(0, 10, n))
    info = data.DatasetInfo('random', 10, (32, 32, 3), data.KNOWN['cifar10'][2],
                            data.KNOWN['cifar10'][3])
  train, val = builders.search_streams(config, info, source)
  search = builders.build_search(config, info, train.steps_per_epoch)
  recorder = _Recorder()
  loggers = [logging.getLogger(n) for n in ('jax._src.dispatch', 'jax._src.interpreters.pxla',
                                            'jax._src.compiler')]
  for logger in loggers:
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
  jax.config.update('jax_log_compiles', True)
  started = time.time()
  state = search.init_state(config.seed)
  step = lease.make_step(search.spec, config.search.jit_whole_step)
  first = None
  for k in range(steps):
    state, metrics = step(state, builders.to_device(train.batch(k)),
                          builders.to_device(val.batch(k)), split_terms=True)
    jax.block_until_ready((state, metrics))
    first = first or time.time() - started
  if search.spec.problem.has_audience:  # the epoch-end pictures' programs
    batch = builders.to_device(val.batch(0))
    jax.block_until_ready(lease.explain_batch(search.spec, state, batch['image'],
                                              batch['label']))
  for program in recorder.programs:
    program['finished_at_s'] -= started
  return recorder.programs, first


def hlo_sizes(dump: str) -> dict[str, tuple[int, int]]:
  """{program name: (instructions before, after optimisation)} from an XLA text dump."""
  sizes: dict[str, list[int]] = {}
  for path in glob.glob(os.path.join(dump, '*.txt')):
    base = os.path.basename(path)
    found = re.match(r'module_\d+\.(.+?)\.(before_optimizations|\w+_after_optimizations)\.txt$',
                     base)
    if not found:
      continue
    with open(path) as f:
      count = sum(1 for line in f if ' = ' in line)
    entry = sizes.setdefault(found.group(1), [0, 0])
    slot = 0 if found.group(2) == 'before_optimizations' else 1
    entry[slot] = max(entry[slot], count)  # the largest module of that name
  return {name: (a, b) for name, (a, b) in sizes.items()}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--job', choices=JOBS, default='default')
  parser.add_argument('--steps', type=int, default=2)
  parser.add_argument('--out', default='')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    programs, first = run_job(args.job, args.steps)
    print(json.dumps({'programs': programs, 'first_step_s': first}))
    return 0
  import subprocess
  dump = tempfile.mkdtemp(prefix='xla_dump_')
  env = dict(os.environ, LEASE_JAX_CACHE='', XLA_FLAGS=(
      os.environ.get('XLA_FLAGS', '') + f' --xla_dump_to={dump} --xla_dump_hlo_as_text').strip())
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  started = time.time()
  done = subprocess.run([sys.executable, __file__, '--child', '--job', args.job, '--steps',
                         str(args.steps)], env=env, capture_output=True, text=True)
  if done.returncode != 0:
    print(done.stderr[-3000:], file=sys.stderr)
    return 1
  result = json.loads(done.stdout.strip().splitlines()[-1])
  sizes = hlo_sizes(dump)
  shutil.rmtree(dump, ignore_errors=True)
  programs = result['programs']
  for program in programs:
    # the log says `jit(name)`, the dump's files `module_N.jit_name.*`
    dumped = re.sub(r'^(\w+)\((.*)\)$', r'\1_\2', program['name'])
    before, after = sizes.get(dumped, (None, None))
    program.update(hlo_before=before, hlo_after=after)

  import numpy as np
  n = 2048
  a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
  a @ a
  t = time.perf_counter()
  for _ in range(5):
    a @ a
  gflops = 5 * 2 * n**3 / (time.perf_counter() - t) / 1e9
  total = sum(p['compile_s'] for p in programs)
  header = (f'job {args.job}, {args.steps} iterations; {platform.processor() or platform.machine()}'
            f', {os.cpu_count()} cores, fp32 matmul {gflops:.0f} GFLOP/s (numpy, measured after '
            f'the job); {datetime.date.today().isoformat()}; persistent cache off; first step '
            f'done at {result["first_step_s"]:.1f} s; {len(programs)} programs, '
            f'{total:.1f} s of compilation; wall {time.time() - started:.0f} s')
  lines = [f'# Compile inventory: {args.job}', '', header, '',
           '| # | program | compile s | HLO instr. before / after | peak RSS GiB after | '
           'argument shapes |', '|---|---|---|---|---|---|']
  ranked = sorted(programs, key=lambda p: -p['compile_s'])
  large = [p for p in ranked if p['compile_s'] >= 0.5]
  for k, p in enumerate(large):
    lines.append(f'| {k + 1} | `{p["name"]}` | {p["compile_s"]:.1f} | {p["hlo_before"]} / '
                 f'{p["hlo_after"]} | {p["peak_rss_gib"]:.2f} | {p["shapes"]} |')
  small = ranked[len(large):]
  if small:
    names = sorted({p['name'] for p in small})
    lines += ['', f'Under 0.5 s each: {len(small)} programs, {sum(p["compile_s"] for p in small):.1f}'
              f' s together ({len(names)} distinct names, e.g. {", ".join(names[:12])}): mostly '
              f'single operations dispatched one by one outside the jitted pieces. The JSON lists '
              f'every program.']
  report = '\n'.join(lines) + '\n'
  print(report)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f'inventory_{args.job}.md'), 'w') as f:
      f.write(report + f'\nCommand: `python benchmarks/compile_inventory.py '
                       f'{" ".join(sys.argv[1:])}`\n')
    with open(os.path.join(args.out, f'inventory_{args.job}.json'), 'w') as f:
      json.dump({'header': header, 'programs': programs}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
