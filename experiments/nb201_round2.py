"""NAS-Bench-201, round two: the budget ladder that validates the proxy (DARTS only), then the
six-method study at the chosen budget.

  python experiments/nb201_round2.py ladder --data_dir=/tmp/cifar10-jpeg \
      --workdir=runs/nb201_round2 --results=experiments/results/nb201_round2
  python experiments/nb201_round2.py measure --data_dir=/tmp/cifar10-jpeg --workdir=runs/measure
  python experiments/nb201_round2.py study --data_dir=/tmp/cifar10-jpeg \
      --workdir=runs/nb201_round2_study --results=experiments/results/nb201_round2/study

A proxy of NB201's search can rank methods only if it reproduces the benchmark's best-known
result: DARTS-1st and DARTS-2nd collapse to `skip_connect` cells (NB201 Table 5). The ladder runs
DARTS-2nd and then DARTS-1st, seeds 1-3, on rungs of growing budget (`RUNGS`, fixed before the
first run and written in the results' README), reading from the arch strings alone how many of
the cell's 6 edges are `skip_connect` after every epoch. It climbs until a rung's DARTS-2nd
cells are skip-dominated (>= `SKIP_DOMINATED` edges) in at least `MOST_SEEDS` of its seeds: that
rung is the study's budget. Round one (`experiments/results/nb201_study/`) is the ladder's rung
`r1`, already run.

Every search is `lease-search` on an NB201 config; a finished run (its `summary.json` says so)
is skipped and an unfinished one resumes from its checkpoint, so the same command resumes the
ladder. After each run `ladder.csv` (one row per finished run: the rung, the method, the seed,
the final arch, the skip count of every epoch) and each run's `history.jsonl` are rewritten
under the results folder. Nothing here sees NB201's accuracy table.

The study (`STUDY_METHODS`, `STUDY_SEEDS`, at `STUDY_RUNG`): DARTS-1st, DARTS-2nd, PC-DARTS and
LeaSE (`hvp` and the paper's finite difference on the DARTS base, `hvp` on the PC-DARTS base),
seed by seed (every method's seed 1, then every method's seed 2, ...), so that a study stopped
midway has all its methods at the same seeds. It runs its own DARTS seeds, in a workdir of its
own (runs named `<rung>_<method>_seed<k>` as the ladder's): the ladder ran from 077e406, whose
NB201 supernet rounds differently in float32 from the study's code (issue 24's layout changed its
XLA program; the first step's loss agrees to 1e-7), so its runs are not the study's. After each run `runs.csv` (round one's columns plus `base`) and `lease-report`'s output over the
finished runs are rewritten. `measure` times a few iterations of each method at the study's
settings in fresh processes (compilation, then seconds per iteration) and prices the study.
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

DARTS_METHODS = ('darts_2nd', 'darts_1st')    # the ladder's, in its order (`STUDY_METHODS`)

# Settings every rung shares: round one's proxy supernet (C = 8, N = 2 against NB201's 16 and 5)
# and NB201's DARTS recipe (the configs: SGD 0.025 cosine to 0.001, momentum 0.9, wd 5e-4,
# clip 5; A by Adam 3e-4 (0.5, 0.999) wd 1e-3; no warm-up).
COMMON = (
    '--config.data.source=image_folder',
    '--config.data.name=cifar10',
    '--config.data.workers=2',
    '--config.explainer.channels=8',
    '--config.explainer.layers=2',
    '--config.audience.width=16',
    '--config.search.log_every=20',
    '--config.search.checkpoint_every=40',
)

# rung -> settings beyond COMMON. Each rung has 78 iterations an epoch (a class-balanced subset
# of the training set, split half search-train, half search-val; the last partial batch dropped).
RUNGS = {
    # r1 is round one (5k images, batch 32, 7 epochs = 546 iterations): already run.
    'r2': ('--config.data.max_examples=5000', '--config.search.batch_size=32',
           '--config.search.epochs=21'),    # 1,638 iterations
    'r3': ('--config.data.max_examples=10000', '--config.search.batch_size=64',
           '--config.search.epochs=50'),    # NB201's batch and epochs on 20% of its data: 3,900
    # r4, NB201's own recipe (all 50k images 25k/25k, batch 64, 50 epochs = 19,500 iterations),
    # is priced in the README, not run: ~13 h per DARTS-2nd seed on 2 cores.
}
SEEDS = (1, 2, 3)
SKIP_DOMINATED = 4     # of the cell's 6 edges
MOST_SEEDS = 2         # of 3
COLUMNS = ('rung', 'method', 'seed', 'arch', 'skip_edges', 'skip_edges_per_epoch', 'steps',
           'search_seconds', 'explainer_val_acc')


# The study: method -> (config, overrides, base). LeaSE keeps the library's explanation and
# audience defaults (a ResNet-18, width 16 here as in round one, γ = 1).
STUDY_METHODS = {
    'darts_2nd': ('nb201_cifar10_darts_2nd', (), 'darts'),
    'lease_hvp': ('nb201_cifar10_lease', ('--config.search.mode=hvp',), 'darts'),
    'lease_fd': ('nb201_cifar10_lease', ('--config.search.mode=finite_difference',), 'darts'),
    'darts_1st': ('nb201_cifar10_darts_1st', (), 'darts'),
    'pcdarts': ('nb201_cifar10_pcdarts', (), 'pc_darts'),
    'lease_hvp_pcdarts': ('nb201_cifar10_lease_pcdarts', ('--config.search.mode=hvp',),
                          'pc_darts'),
}
# Seeds per method: five for the paper's comparison and ours (DARTS-2nd, LeaSE hvp, LeaSE
# finite difference), three for the others (issue 25).
STUDY_SEEDS = {'darts_1st': 3, 'darts_2nd': 5, 'pcdarts': 3, 'lease_hvp': 5, 'lease_fd': 5,
               'lease_hvp_pcdarts': 3}
# The budget (results README, 'Part 2'): r3 prices the study at 69 h of the round's 24 (measured,
# `measure`), r2 at 14.1 h; r2 is the longest affordable rung.
STUDY_RUNG = 'r2'
STUDY_COLUMNS = ('dataset', 'method', 'base', 'seed', 'arch', 'skip_edges', 'search_seconds',
                 'steps', 'explainer_val_acc', 'audience_val_acc')


def command(rung: str, method: str, seed: int, data_dir: str, workdir: str,
            *extra: str) -> list[str]:
  config, overrides, _ = STUDY_METHODS[method]
  return [sys.executable, '-m', 'lease_jax.main',
          f'--config={os.path.join(CONFIG_DIR, config + ".py")}', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', f'--config.seed={seed}', *COMMON, *RUNGS[rung],
          *overrides, *extra]


def skip_edges(arch: str) -> int:
  """How many of an NB201 cell's edges are `skip_connect` (from its arch string)."""
  return arch.count('skip_connect~')


def read_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_history(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'history.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def run_row(rung: str, method: str, seed: int, summary: dict, history: list[dict]) -> dict:
  """One `ladder.csv` row of a finished run."""
  return {'rung': rung, 'method': method, 'seed': seed, 'arch': summary['arch'],
          'skip_edges': skip_edges(summary['arch']),
          'skip_edges_per_epoch': ' '.join(str(skip_edges(entry['genotype']['arch']))
                                           for entry in history),
          'steps': summary['step'], 'search_seconds': round(summary['search_time_s'], 1),
          'explainer_val_acc': round(summary['final_metrics']['explainer_val_acc'], 4)}


def collapsed(rows: list[dict], rung: str) -> bool:
  """The ladder's rule: the rung's DARTS-2nd cells are skip-dominated in most seeds."""
  hits = [row['skip_edges'] >= SKIP_DOMINATED for row in rows
          if row['rung'] == rung and row['method'] == 'darts_2nd']
  return sum(hits) >= MOST_SEEDS


def finished_rows(workdir: str, results: str) -> list[dict]:
  """Every finished run's row; each run's history copied under `results/histories/`."""
  os.makedirs(os.path.join(results, 'histories'), exist_ok=True)
  rows = []
  for rung in RUNGS:
    for method in DARTS_METHODS:
      for seed in SEEDS:
        name = f'{rung}_{method}_seed{seed}'
        summary = read_summary(os.path.join(workdir, name))
        if not summary or not summary.get('finished'):
          continue
        history = read_history(os.path.join(workdir, name))
        rows.append(run_row(rung, method, seed, summary, history))
        shutil.copyfile(os.path.join(workdir, name, 'history.jsonl'),
                        os.path.join(results, 'histories', f'{name}.jsonl'))
  return rows


def write_csv(path: str, columns: tuple[str, ...], rows: list[dict]) -> None:
  """`rows` as a CSV table at `path`, replaced whole (a reader never sees half a table)."""
  with open(path + '.tmp', 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(path + '.tmp', path)


def write_ladder(rows: list[dict], results: str) -> None:
  write_csv(os.path.join(results, 'ladder.csv'), COLUMNS, rows)


def run_search(rung: str, method: str, seed: int, data_dir: str, workdir: str) -> int | None:
  """Runs `<rung>_<method>_seed<seed>` under `workdir` unless it finished (None: skipped; an
  unfinished one resumes), its output appended to `<name>.log` beside it; the search's exit
  status."""
  name = f'{rung}_{method}_seed{seed}'
  run = os.path.join(workdir, name)
  summary = read_summary(run)
  if summary and summary.get('finished'):
    print(f'{name}: finished, skipped', flush=True)
    return None
  print(f'{name}: searching in {run}', flush=True)
  with open(os.path.join(workdir, f'{name}.log'), 'a') as log:
    result = subprocess.run(command(rung, method, seed, data_dir, run), stdout=log,
                            stderr=subprocess.STDOUT)
  if result.returncode:
    print(f'{name}: stopped (exit {result.returncode}); see its log', flush=True)
  return result.returncode


def ladder(data_dir: str, workdir: str, results: str) -> int:
  os.makedirs(workdir, exist_ok=True)
  for rung in RUNGS:
    for method in DARTS_METHODS:
      for seed in SEEDS:
        status = run_search(rung, method, seed, data_dir, workdir)
        if status:
          return status
        write_ladder(finished_rows(workdir, results), results)
    rows = finished_rows(workdir, results)
    write_ladder(rows, results)
    if collapsed(rows, rung):
      print(f'rung {rung}: DARTS-2nd skip-dominated in most seeds: the study\'s budget',
            flush=True)
      return 0
    print(f'rung {rung}: DARTS-2nd not skip-dominated in most seeds: climbing', flush=True)
  print('no rung collapsed DARTS-2nd', flush=True)
  return 0


def study_runs() -> list[tuple[str, int]]:
  """The study's (method, seed) in the order they run: seed by seed, every method at each."""
  return [(method, seed) for seed in range(1, max(STUDY_SEEDS.values()) + 1)
          for method in STUDY_METHODS if seed <= STUDY_SEEDS[method]]


def study_row(method: str, seed: int, summary: dict) -> dict:
  """One `runs.csv` row of a finished study run."""
  audience = summary.get('final_audience_val_acc')  # None without an audience (γ = 0)
  return {'dataset': 'cifar10_jpeg', 'method': method, 'base': STUDY_METHODS[method][2],
          'seed': seed, 'arch': summary['arch'], 'skip_edges': skip_edges(summary['arch']),
          'search_seconds': round(summary['search_time_s'], 1), 'steps': summary['step'],
          'explainer_val_acc': round(summary['final_explainer_val_acc'], 4),
          'audience_val_acc': '' if audience is None else round(audience, 4)}


def write_study(workdir: str, results: str) -> int:
  """`runs.csv`, each finished run's history under `histories/`, and `lease-report`'s output
  (`report/`) over the finished runs, unfinished ones listed; returns the finished count."""
  from lease_jax import report
  os.makedirs(os.path.join(results, 'histories'), exist_ok=True)
  rows, started = [], []
  for method, seed in study_runs():
    name = f'{STUDY_RUNG}_{method}_seed{seed}'
    run = os.path.join(workdir, name)
    summary = read_summary(run)
    if os.path.exists(os.path.join(run, 'config.json')):
      started.append(run)
    if summary and summary.get('finished'):
      rows.append(study_row(method, seed, summary))
      shutil.copyfile(os.path.join(run, 'history.jsonl'),
                      os.path.join(results, 'histories', f'{name}.jsonl'))
  write_csv(os.path.join(results, 'runs.csv'), STUDY_COLUMNS, rows)
  if started:
    report.write_report(started, os.path.join(results, 'report'))
  return len(rows)


def study(data_dir: str, workdir: str, results: str) -> int:
  """Runs the study's searches in `study_runs()` order, skipping finished ones and resuming an
  unfinished one; rewrites the results after each."""
  os.makedirs(workdir, exist_ok=True)
  for method, seed in study_runs():
    status = run_search(STUDY_RUNG, method, seed, data_dir, workdir)
    if status is None:
      continue
    finished = write_study(workdir, results)
    if status:
      return status
    print(f'{finished} of the study\'s {len(study_runs())} runs finished', flush=True)
  return 0


def measure(data_dir: str, workdir: str, rung: str = STUDY_RUNG, steps: int = 12,
            methods: tuple[str, ...] = tuple(STUDY_METHODS)) -> list[dict]:
  """Compilation and seconds per iteration of each study method at `rung`'s settings, each in
  a fresh process (`steps` + 2 iterations; the first compiles, the second is discarded), read
  from the run's `log.txt` (a line per step, stamped to the second), and the study's price at
  that rung from them."""
  import datetime
  stamp = lambda line: datetime.datetime.strptime(line[:19], '%Y-%m-%d %H:%M:%S')
  priced = []
  for method in methods:
    run = os.path.join(workdir, f'measure_{rung}_{method}')
    shutil.rmtree(run, ignore_errors=True)
    started = datetime.datetime.now()
    subprocess.run(command(rung, method, 1, data_dir, run,
                           f'--config.search.max_steps={steps + 2}', '--config.search.log_every=1'),
                   capture_output=True, text=True, check=True)
    with open(os.path.join(run, 'log.txt')) as f:
      lines = f.read().splitlines()
    times = [stamp(line) for line in lines if line[20:].startswith('step ')]
    per_step = (times[-1] - times[1]).total_seconds() / (len(times) - 2)
    first = (times[0] - started).total_seconds()
    compiled = next(line[20:] for line in lines if 'first step done' in line)
    total_steps = read_summary(run)['total_steps']
    hours = STUDY_SEEDS[method] * (first + per_step * total_steps) / 3600
    priced.append({'method': method, 'first_step_s': round(first), 'per_step_s': per_step,
                   'seeds': STUDY_SEEDS[method], 'hours': hours})
    print(f'{method}: process start to first step {first:.0f} s ({compiled}), then '
          f'{per_step:.2f} s per iteration; {STUDY_SEEDS[method]} seeds x {total_steps} '
          f'iterations = {hours:.1f} h', flush=True)
  print(f'the study at {rung}: {sum(p["hours"] for p in priced):.1f} h', flush=True)
  return priced


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('part', choices=('ladder', 'measure', 'study'))
  parser.add_argument('--data_dir', required=True, help='the CIFAR-10 (JPEG) image folder root')
  parser.add_argument('--workdir', required=True, help='where the searches run (and resume)')
  parser.add_argument('--results', default='experiments/results/nb201_round2')
  parser.add_argument('--rung', default=STUDY_RUNG, choices=sorted(RUNGS),
                      help='measure: the rung whose settings are timed')
  parser.add_argument('--methods', default=','.join(STUDY_METHODS),
                      help='measure: the methods timed, comma-separated')
  args = parser.parse_args(argv)
  data_dir, workdir = os.path.abspath(args.data_dir), os.path.abspath(args.workdir)
  if args.part == 'measure':
    methods = tuple(m for m in args.methods.split(',') if m)
    unknown = [m for m in methods if m not in STUDY_METHODS]
    if unknown:
      print(f'unknown methods {unknown}; accepted: {", ".join(STUDY_METHODS)}', file=sys.stderr)
      return 2
    measure(data_dir, workdir, args.rung, methods=methods)
    return 0
  os.makedirs(args.results, exist_ok=True)
  part = ladder if args.part == 'ladder' else study
  return part(data_dir, workdir, os.path.abspath(args.results))


if __name__ == '__main__':
  sys.exit(main())
