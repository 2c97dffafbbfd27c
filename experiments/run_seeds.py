"""Runs seeds 1..N of a search or training config and reports mean ± std of their results.

  python experiments/run_seeds.py search --seeds=3 --workdir=runs/seeds -- --config=configs/default.py
  python experiments/run_seeds.py train --seeds=3 --workdir=runs/eval_seeds -- \
      --config=configs/eval_cifar10.py --genotype=DARTS_V2

Everything after `--` goes to `lease-search` / `lease-train` unchanged, plus `--config.seed=<i>`
and `--workdir=<workdir>/seed_<i>`. A seed whose workdir already holds a finished run is not run
again (an interrupted one resumes), so the launcher itself can be re-run after a failure. It
writes `<workdir>/seeds.json` and `<workdir>/seeds.md` (one row per seed, then mean ± std), and
for searches `<workdir>/report/` (`lease-report` over the seeds: the chosen operation of each
edge across seeds, accuracy and ‖∇_A‖ curves with seed bands).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

PROGRAMS = {'search': 'lease_jax.main', 'train': 'lease_jax.train_main'}


def _metrics(kind: str, summary: dict) -> dict[str, float]:
  """The numbers to aggregate from one run's summary.json."""
  if kind == 'train':
    keys = ('test_error', 'test_loss', 'params_no_aux', 'train_time_s')
    return {k: float(summary[k]) for k in keys if k in summary}
  out = {f'final_{k}': float(v) for k, v in summary.get('final_metrics', {}).items()
         if k.endswith(('_loss', '_acc'))}
  out['cifar_eval_params_no_aux'] = float(summary['cifar_eval_network']['params_no_aux'])
  out['search_time_s'] = float(summary['search_time_s'])
  return out


def aggregate(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
  """Mean and (sample, ddof=1) standard deviation of each metric over the seeds."""
  keys = sorted(set().union(*rows)) if rows else []
  out = {}
  for key in keys:
    values = np.asarray([row[key] for row in rows if key in row], np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    out[key] = (float(values.mean()), std)
  return out


def _markdown(kind, seeds, rows, stats) -> str:
  keys = list(stats)
  lines = [f'# {kind}: seeds {seeds[0]}..{seeds[-1]}', '',
           '| seed | ' + ' | '.join(keys) + ' |', '|' + '---|' * (len(keys) + 1)]
  for seed, row in zip(seeds, rows):
    lines.append(f'| {seed} | ' + ' | '.join(f'{row.get(k, float("nan")):.4g}' for k in keys)
                 + ' |')
  lines.append('| mean ± std | ' + ' | '.join(f'{m:.4g} ± {s:.2g}' for m, s in stats.values())
               + ' |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  passthrough = argv[argv.index('--') + 1:] if '--' in argv else []
  own = argv[:argv.index('--')] if '--' in argv else argv
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('kind', choices=sorted(PROGRAMS))
  parser.add_argument('--seeds', type=int, default=3, help='runs seeds 1..N')
  parser.add_argument('--workdir', required=True)
  args = parser.parse_args(own)
  if args.seeds < 1:
    parser.error(f'--seeds must be >= 1, got {args.seeds}')
  seeds = list(range(1, args.seeds + 1))
  rows = []
  for seed in seeds:
    workdir = os.path.join(args.workdir, f'seed_{seed}')
    summary_path = os.path.join(workdir, 'summary.json')
    finished = False
    if os.path.exists(summary_path):
      with open(summary_path) as f:
        finished = json.load(f).get('finished', False)
    if not finished:
      command = [sys.executable, '-m', PROGRAMS[args.kind], *passthrough,
                 f'--config.seed={seed}', f'--workdir={workdir}']
      print('$', ' '.join(command), flush=True)
      result = subprocess.run(command)
      if result.returncode != 0:
        print(f'run_seeds: seed {seed} failed (exit {result.returncode}); its workdir {workdir} '
              f'resumes when this command is run again', file=sys.stderr)
        return result.returncode
    with open(summary_path) as f:
      rows.append(_metrics(args.kind, json.load(f)))
  stats = aggregate(rows)
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, 'seeds.json'), 'w') as f:
    json.dump({'seeds': seeds, 'runs': rows,
               'mean': {k: m for k, (m, _) in stats.items()},
               'std': {k: s for k, (_, s) in stats.items()}}, f, indent=1)
  table = _markdown(args.kind, seeds, rows, stats)
  with open(os.path.join(args.workdir, 'seeds.md'), 'w') as f:
    f.write(table)
  print(table)
  if args.kind == 'search':  # lease-report's tables, edge frequencies and seed bands
    from lease_jax import report
    report.write_report([os.path.join(args.workdir, f'seed_{s}') for s in seeds],
                        os.path.join(args.workdir, 'report'))
  return 0


if __name__ == '__main__':
  sys.exit(main())
