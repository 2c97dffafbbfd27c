"""Does the hypergradient's approximation change the search? The same search (seed, batches, δ0
keys: all functions of (seed, step)) with `hvp` (exact), the paper's `finite_difference` and
`first_order`; the derived cell of every epoch, the edges where it differs from the hvp search's
of the same seed, and α's distance from that search's α over the epochs.

  python experiments/mode_searches.py --data_dir=/tmp/cifar10-jpeg --workdir=runs/mode_searches \
      --results=experiments/results/compare_hypergrads_cifar10/searches --seeds=1,2 \
      --control_seeds=3

Every mode runs at every seed of `--seeds` (the first seed's searches are named by their mode,
the others' `<mode>_seed<k>`), and each is compared with the hvp search of its own seed. The
control: hvp searches from the other seeds of `--seeds` and from `--control_seeds` (hvp only),
compared with the first seed's hvp search (other weights' initialisation, batch order and δ0
keys; the same data split, which `data.split_seed` fixes): the search's own sensitivity to its
seed, the yardstick for the approximations' differences.

Each search is `lease-search` on `configs/search_cifar10_small.py` (resumable: the same command
skips finished searches and resumes an unfinished one); then `searches.md`, `searches.csv` and
`alpha_distance.png` are written from the runs' `history.jsonl`.

`--settings` (default: the three modes) names what searches beside `hvp`: a mode, or a
multi-step or implicit setting named as `lease-compare-grads` names it (`unroll_<K>`,
`unroll_<K>_<J>_<M>`, `cg_<n>`, `neumann_<n>`): e.g. the one-step and the 2-step searches of one
seed (issue 26),

  python experiments/mode_searches.py --data_dir=/tmp/cifar10-jpeg --workdir=runs/mode_searches \
      --results=experiments/results/compare_hypergrads_cifar10/searches_multistep \
      --seeds=2 --control_seeds= --settings=hvp,unroll_2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np

MODES = ('hvp', 'finite_difference', 'first_order')
UNROLLED_STEPS = ('explainer_steps', 'explanation_steps', 'audience_steps')
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'lease_jax',
                      'configs', 'search_cifar10_small.py')


def _finished(workdir: str) -> bool:
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return bool(json.load(f).get('finished'))


def read_history(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'history.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def differing_edges(genotype: dict, reference: dict) -> list[str]:
  """The (cell, node, op <- input) choices of `genotype` that `reference` does not make."""
  out = []
  for cell in ('normal', 'reduce'):
    for node in range(len(genotype[cell]) // 2):
      mine = {tuple(e) for e in genotype[cell][2 * node:2 * node + 2]}
      theirs = {tuple(e) for e in reference[cell][2 * node:2 * node + 2]}
      out += [f'{cell} node {node}: {op}<-{src}' for op, src in sorted(mine - theirs)]
  return out


def alpha_vector(entry: dict) -> np.ndarray:
  return np.concatenate([np.ravel(entry['alphas'][k]) for k in sorted(entry['alphas'])])


def search_name(mode: str, seed: int, first_seed: int) -> str:
  return mode if seed == first_seed else f'{mode}_seed{seed}'


def search_flags(setting: str) -> list[str]:
  """The `lease-search` flags of a setting: a mode of MODES, or a multi-step or implicit setting
  of `hypergrad_study.parse_setting` (its mode, unrolled steps and solver); one-line error else."""
  if setting in MODES:
    return [f'--config.search.mode={setting}']
  from lease_jax import errors, hypergrad_study
  accepted = (f'accepted: {", ".join(MODES)}, unroll_<K>, unroll_<K>_<J>_<M>, cg_<n>, '
              'neumann_<n>')
  try:
    parsed = hypergrad_study.parse_setting(setting)
  except errors.UserError:
    raise errors.UserError(f'--settings: {setting!r}; {accepted}') from None
  if parsed.darts2 or parsed.official_sign or parsed.mode not in ('hvp', 'implicit'):
    raise errors.UserError(f'--settings: {setting!r}; {accepted}')
  flags = [f'--config.search.mode={parsed.mode}']
  flags += [f'--config.hypergrad.{field}={k}' for field, k in zip(UNROLLED_STEPS, parsed.steps)
            if k != 1]
  if parsed.solver is not None:
    flags += [f'--config.hypergrad.implicit_solver={parsed.solver}',
              f'--config.hypergrad.implicit_iterations={parsed.iterations}']
  return flags


def plan_searches(seeds: list[int], control_seeds: list[int],
                  settings: tuple[str, ...] = MODES) -> list[tuple[str, str, int, str]]:
  """(name, setting, seed, reference's name) of every search: each setting at every seed
  against the hvp search of its seed; hvp at a later seed (a control) against the first
  seed's."""
  if 'hvp' not in settings:
    raise ValueError('hvp, the reference of every search, must be one of the settings')
  first = seeds[0]
  plan = []
  for seed in seeds + [s for s in control_seeds if s not in seeds]:
    for setting in (settings if seed in seeds else ('hvp',)):
      reference = search_name('hvp', first if setting == 'hvp' else seed, first)
      plan.append((search_name(setting, seed, first), setting, seed, reference))
  return plan


def compare_histories(histories: dict[str, list[dict]], references: dict[str, str]) -> list[dict]:
  """One row per (search, epoch): the cell's differences from its reference search's and α's
  distance to the reference's α (`references`: search name -> reference name)."""
  rows = []
  for name, history in histories.items():
    reference = histories[references[name]]
    for entry, ref in zip(history, reference):
      a, r = alpha_vector(entry), alpha_vector(ref)
      differs = differing_edges(entry['genotype'], ref['genotype'])
      rows.append({'search': name, 'reference': references[name], 'epoch': entry['epoch'],
                   'step': entry['step'], 'edges_differing': len(differs),
                   'differences': '; '.join(differs),
                   'alpha_distance': float(np.linalg.norm(a - r)),
                   'alpha_norm_reference': float(np.linalg.norm(r)),
                   'alpha_cosine': float(a @ r / (np.linalg.norm(a) * np.linalg.norm(r))),
                   'explainer_val_acc': entry['metrics'].get('explainer_val_acc'),
                   'audience_val_acc': entry['metrics'].get('audience_val_acc')})
  return rows


def write_results(results: str, rows: list[dict], histories: dict, command: str) -> None:
  os.makedirs(results, exist_ok=True)
  with open(os.path.join(results, 'searches.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  lines = [f'Command: `{command}`', '', '| search | reference | epoch | edges differing | '
           '‖α − α_ref‖ | ‖α_ref‖ | cos(α, α_ref) | explainer val acc | audience val acc |',
           '|---|---|---|---|---|---|---|---|---|']
  fmt = lambda v: '–' if v is None else f'{v:.3f}'
  for r in rows:
    lines.append(f'| {r["search"]} | {r["reference"]} | {r["epoch"]} | '
                 f'{r["edges_differing"]} of 16 | '
                 f'{r["alpha_distance"]:.4f} | {r["alpha_norm_reference"]:.4f} | '
                 f'{r["alpha_cosine"]:.3f} | '
                 f'{fmt(r["explainer_val_acc"])} | {fmt(r["audience_val_acc"])} |')
  lines += ['', '## Final cells', '']
  for name, history in histories.items():
    lines.append(f'- {name}: `{json.dumps(history[-1]["genotype"])}`')
  with open(os.path.join(results, 'searches.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for name in histories:
    sel = [r for r in rows if r['search'] == name]
    if sel[0]['reference'] == name:
      continue
    style = 'o--' if sel[0]['reference'] == 'hvp' and name.startswith('hvp_') else 'o-'
    label = f'{name} vs {sel[0]["reference"]}'  # the seed controls dashed
    axes[0].plot([r['epoch'] for r in sel], [r['alpha_distance'] for r in sel], style, label=label)
    axes[1].plot([r['epoch'] for r in sel], [r['edges_differing'] for r in sel], style,
                 label=label)
  axes[0].set_title('‖α − α_ref‖ per epoch')
  axes[1].set_title("edges of the derived cells that differ from the reference's (of 16)")
  for ax in axes:
    ax.set_xlabel('epoch')
    ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(results, 'alpha_distance.png'), dpi=110)
  plt.close(fig)


def _seed_list(parser, flag: str, value: str) -> list[int]:
  try:
    return [int(s) for s in value.split(',') if s.strip()]
  except ValueError:
    parser.error(f'--{flag} {value!r}: accepted: comma-separated integers')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data_dir', required=True, help='the CIFAR-10 (JPEG) image folder root')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--results', required=True)
  parser.add_argument('--seeds', default='1',
                      help='comma-separated seeds at which every mode searches')
  parser.add_argument('--control_seeds', default='2',
                      help='comma-separated seeds of hvp-only control searches ("" for none)')
  parser.add_argument('--settings', default=','.join(MODES),
                      help='comma-separated settings searched at every seed of --seeds (hvp '
                      'among them): modes, unroll_<K>, unroll_<K>_<J>_<M>, cg_<n>, neumann_<n>')
  args, extra = parser.parse_known_args()
  seeds, control_seeds = [_seed_list(parser, flag, getattr(args, flag))
                          for flag in ('seeds', 'control_seeds')]
  if not seeds:
    parser.error('--seeds: at least one seed')
  settings = tuple(s.strip() for s in args.settings.split(',') if s.strip())
  from lease_jax import errors
  try:
    plan = plan_searches(seeds, control_seeds, settings)
    flags = {setting: search_flags(setting) for setting in settings}
  except (ValueError, errors.UserError) as e:
    parser.error(f'--settings={args.settings}: {e}' if isinstance(e, ValueError) else str(e))
  histories = {}
  for name, setting, seed, _ in plan:
    workdir = os.path.join(args.workdir, name)
    if not _finished(workdir):
      print(f'{name}: searching in {workdir}', flush=True)
      subprocess.run([sys.executable, '-m', 'lease_jax.main', f'--config={CONFIG}',
                      f'--workdir={workdir}', f'--config.data.data_dir={args.data_dir}',
                      f'--config.seed={seed}', *flags[setting], *extra], check=True)
    histories[name] = read_history(workdir)
  command = 'python experiments/mode_searches.py ' + ' '.join(sys.argv[1:])
  references = {name: reference for name, _, _, reference in plan}
  write_results(args.results, compare_histories(histories, references), histories, command)
  print(open(os.path.join(args.results, 'searches.md')).read())


if __name__ == '__main__':
  main()
