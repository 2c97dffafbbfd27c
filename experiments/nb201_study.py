"""The blind NAS-Bench-201 study: LeaSE against DARTS on CIFAR-10 (JPEG), several seeds.

  python experiments/nb201_study.py --data_dir=/tmp/cifar10-jpeg \
      --workdir=runs/nb201_study --results=experiments/results/nb201_study
  python experiments/nb201_study.py --measure --data_dir=/tmp/cifar10-jpeg --workdir=/tmp/m

Every search is `lease-search` on an NB201 config with the study's fixed settings (`SETTINGS`,
chosen before the first run and written in the results' README); the cells found are looked up in
NAS-Bench-201's table by the maintainers, so nothing here sees an accuracy of the benchmark.
Runs go seed by seed, each seed through every method, so that an interrupted study has whole
seeds. A finished run (its `summary.json` says finished) is skipped; an unfinished one resumes
from its checkpoint (the same command). After each run, `runs.csv` is rewritten from every
finished run's summary and the run's `history.jsonl` (the arch string of every epoch) is copied
beside it.

`--measure` runs a few steps of each method and prints the compile and per-step times: how the
budget was sized.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'lease_jax', 'configs')

# method -> (config, overrides)
METHODS = {
    'darts_1st': ('nb201_cifar10_darts_1st', ()),
    'darts_2nd': ('nb201_cifar10_darts_2nd', ()),
    'lease_hvp': ('nb201_cifar10_lease', ('--config.search.mode=hvp',)),
    'lease_fd': ('nb201_cifar10_lease', ('--config.search.mode=finite_difference',)),
}
SEEDS = (1, 2, 3)

# The study's fixed settings (a proxy of NB201's search, sized for 2 CPU cores).
SETTINGS = (
    '--config.data.source=image_folder',
    '--config.data.name=cifar10',
    '--config.data.max_examples=5000',    # a class-balanced 5k: 2.5k train, 2.5k val
    '--config.data.workers=2',
    '--config.explainer.channels=8',      # C = 8 (NB201: 16)
    '--config.explainer.layers=2',        # N = 2 cells per stage (NB201: 5)
    '--config.audience.width=16',         # ResNet-18 width 16 (paper: 64)
    '--config.search.batch_size=32',
    '--config.search.epochs=7',           # 78 steps an epoch: 546 steps
    '--config.search.log_every=20',
    '--config.search.checkpoint_every=40',
)
COLUMNS = ('dataset', 'method', 'seed', 'arch', 'search_seconds', 'steps', 'explainer_val_acc',
           'audience_val_acc')


def command(method: str, seed: int, data_dir: str, workdir: str, *extra: str) -> list[str]:
  config, overrides = METHODS[method]
  return [sys.executable, '-m', 'lease_jax.main',
          f'--config={os.path.join(CONFIG_DIR, config + ".py")}', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', f'--config.seed={seed}', *SETTINGS, *overrides,
          *extra]


def _summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_results(workdir: str, results: str) -> int:
  """`runs.csv` from every finished run, each run's history beside it; returns the row count."""
  os.makedirs(os.path.join(results, 'histories'), exist_ok=True)
  rows = []
  for seed in SEEDS:
    for method in METHODS:
      run = os.path.join(workdir, f'{method}_seed{seed}')
      summary = _summary(run)
      if not summary or not summary.get('finished'):
        continue
      final = summary.get('final_metrics', {})
      rows.append({'dataset': 'cifar10_jpeg', 'method': method, 'seed': seed,
                   'arch': summary['arch'], 'search_seconds': round(summary['search_time_s'], 1),
                   'steps': summary['step'],
                   'explainer_val_acc': round(final.get('explainer_val_acc', float('nan')), 4),
                   'audience_val_acc': (round(final['audience_val_acc'], 4)
                                        if 'audience_val_acc' in final else '')})
      shutil.copyfile(os.path.join(run, 'history.jsonl'),
                      os.path.join(results, 'histories', f'{method}_seed{seed}.jsonl'))
  tmp = os.path.join(results, 'runs.csv.tmp')
  with open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, os.path.join(results, 'runs.csv'))
  return len(rows)


def measure(data_dir: str, workdir: str, steps: int = 5) -> None:
  """First-step (compile) and per-step seconds of every method at the study's settings, read
  from each run's `log.txt` (a line per step)."""
  import datetime
  for method in METHODS:
    run = os.path.join(workdir, f'measure_{method}')
    shutil.rmtree(run, ignore_errors=True)
    subprocess.run(command(method, 1, data_dir, run, f'--config.search.max_steps={steps + 1}',
                           '--config.search.log_every=1'),
                   capture_output=True, text=True, check=True)
    with open(os.path.join(run, 'log.txt')) as f:
      lines = f.read().splitlines()
    stamp = lambda line: datetime.datetime.strptime(line[:19], '%Y-%m-%d %H:%M:%S')
    first = next(line for line in lines if 'first step done' in line)
    times = [stamp(line) for line in lines if ' step ' in line and line[20:].startswith('step ')]
    per_step = (times[-1] - times[0]).total_seconds() / (len(times) - 1)
    print(f'{method}: {first[20:]}; then {per_step:.2f} s per step ({len(times) - 1} steps)',
          flush=True)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data_dir', required=True, help='the CIFAR-10 (JPEG) image folder root')
  parser.add_argument('--workdir', required=True, help='where the searches run (and resume)')
  parser.add_argument('--results', default='experiments/results/nb201_study')
  parser.add_argument('--methods', default=','.join(METHODS))
  parser.add_argument('--measure', action='store_true')
  args = parser.parse_args(argv)
  if args.measure:
    measure(args.data_dir, args.workdir)
    return 0
  methods = args.methods.split(',')
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    print(f'unknown methods {unknown}; accepted: {", ".join(METHODS)}', file=sys.stderr)
    return 2
  os.makedirs(args.workdir, exist_ok=True)
  for seed in SEEDS:
    for method in methods:
      run = os.path.join(args.workdir, f'{method}_seed{seed}')
      summary = _summary(run)
      if summary and summary.get('finished'):
        print(f'{method} seed {seed}: finished, skipped', flush=True)
        continue
      print(f'{method} seed {seed}: searching in {run}', flush=True)
      with open(os.path.join(args.workdir, f'{method}_seed{seed}.log'), 'a') as log:
        result = subprocess.run(command(method, seed, args.data_dir, run), stdout=log,
                                stderr=subprocess.STDOUT)
      if result.returncode:
        print(f'{method} seed {seed}: failed (exit {result.returncode}); see its log',
              flush=True)
        continue
      count = write_results(args.workdir, args.results)
      print(f'{method} seed {seed}: done ({count} runs in runs.csv)', flush=True)
  write_results(args.workdir, args.results)
  return 0


if __name__ == '__main__':
  sys.exit(main())
