"""Where a `lease-compare-grads` setting's first call goes: tracing and lowering, XLA's compile
(or the persistent cache's load), and the compiled run.

  python benchmarks/bench_compare_setting.py --config=configs/compare_hypergrads_cifar10.py \
      --config.data.data_dir=/tmp/cifar10-jpeg --workdir=runs/compare_cifar10 --setting=exact
  python benchmarks/bench_compare_setting.py ... --setting=exact --no-cache   # a real compile

`lease-compare-grads` reports a setting's compile time as its first call minus its second, which
folds tracing, lowering and a cache load or a compile into one number. Here the single program
of a jitted setting (`exact`, `first_order`) is traced and lowered (`jit(...).lower`), compiled
(`.compile()`: with the persistent cache on, a hit is a load from disk, and the line says which),
and run `--repeats` times at one kept state of the workdir (`--point`, made by
`lease-compare-grads`). Prints the seconds of each phase, the program's HLO size and the peak RSS.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time


class _CacheEvents(logging.Handler):
  """Counts JAX's persistent-cache hits and misses of the program named `name`."""

  def __init__(self, name: str):
    super().__init__(logging.DEBUG)
    self.name, self.hits, self.misses = name, 0, 0

  def emit(self, record):
    message = record.getMessage().lower()
    if f"'{self.name}'" in message:
      self.hits += 'compilation cache hit' in message
      self.misses += 'compilation cache miss' in message


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True, help='a lease-compare-grads workdir')
  parser.add_argument('--setting', default='exact', help='a jitted setting: exact, first_order')
  parser.add_argument('--point', type=int, default=0, help='a kept step of the workdir')
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--no-cache', action='store_true', help='persistent cache off')
  args, config_args = parser.parse_known_args()
  config_file = next((a.split('=', 1)[1] for a in config_args if a.startswith('--config=')), None)
  if config_file is None:
    parser.error('--config=<file> is required')
  files = os.listdir(args.workdir) if os.path.isdir(args.workdir) else []
  kept = sorted(int(f[6:-4]) for f in files if f.startswith('state_') and f.endswith('.pkl'))
  if args.point not in kept:
    parser.error(f'--point {args.point}: no kept state in --workdir {args.workdir!r} (kept: '
                 f'{kept or "none; run lease-compare-grads there first"})')
  if args.no_cache:
    os.environ['LEASE_JAX_CACHE'] = ''
  import jax
  import numpy as np

  from lease_jax import cli_utils, hypergrad_study
  cli_utils.setup_jax()
  jax.config.update('jax_default_matmul_precision', 'highest')  # as lease-compare-grads runs
  events = _CacheEvents('jit_compute')
  for name in ('jax._src.compilation_cache', 'jax._src.compiler'):
    logger = logging.getLogger(name)
    logger.addHandler(events)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # counted, not printed
  config = cli_utils.load_config(config_file,
                                 [a for a in config_args if a.startswith('--config.')])
  setting = hypergrad_study.parse_setting(args.setting)
  if setting.mode not in ('exact', 'first_order'):
    parser.error(f'--setting {args.setting!r}: accepted: a single-program setting (exact, '
                 f'first_order, darts2_exact, darts2_first_order)')
  config = hypergrad_study.setting_config(config, setting)
  search, train, val = hypergrad_study.setup(config)
  _, inputs = hypergrad_study.inputs_at(search, train, val, args.workdir, args.point)
  # The program `lease-compare-grads` runs (the same cache key): jitted for these settings.
  compute = hypergrad_study.setting_function(search.spec.problem, setting)

  start = time.perf_counter()
  lowered = compute.lower(None, **inputs)
  lower_s = time.perf_counter() - start
  hlo_mb = len(lowered.as_text()) / 1e6
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  run_s = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(None, **inputs))
    run_s.append(time.perf_counter() - start)
  peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  cache = ('off' if args.no_cache else 'hit (a load)' if events.hits
           else 'miss (a compile)' if events.misses else 'on, no event logged')
  print(f'{args.setting} at step {args.point} (kernels {config.explainer.impl}): '
        f'trace+lower {lower_s:.1f} s (StableHLO {hlo_mb:.1f} MB), compile {compile_s:.1f} s '
        f'[persistent cache: {cache}], run median {float(np.median(run_s)):.2f} s over '
        f'{args.repeats}, peak RSS {peak_gib:.2f} GiB', flush=True)


if __name__ == '__main__':
  sys.exit(main())
