"""Why the paper's finite difference errs: its error against the exact product as a function of
the radius r, in float32 and float64, with the ReLU supernet and with a smooth variant.

  python experiments/fd_error_curve.py --config=configs/compare_hypergrads_cifar10.py \
      --config.data.data_dir=/tmp/cifar10-jpeg --workdir=runs/compare_cifar10 \
      --points=0,90,190 --out=experiments/results/compare_hypergrads_cifar10/fd_error_curve

At each kept state of a `lease-compare-grads` workdir (made here if missing), for each variant
(`relu`: the search's networks; `smooth`: GELU for every ReLU and average for max pooling, in the
explainer and the audience, `explainer.impl='smooth'`) and each precision, ∇_A O_A by hvp and by
central differences at radii r = 1e-6 .. 1 (over ‖v‖). The truth is the float64 hvp of the same
variant. Central differences have a truncation error ~ r² on a smooth function, a jump-sized
error wherever ±r v crosses a kink, and a round-off error ~ ε_mach / r: float64 removes the
round-off, the smooth variant removes the kinks, so the four curves say which dominates at
DARTS's r = 0.01 — for each term of the hypergradient.

Each (variant, precision) runs in its own process (float64 needs `jax_enable_x64` from the start)
and keeps its result (`curve_<variant>_<dtype>.json` in --out): the same command resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np

RADII = tuple(float(r) for r in np.logspace(-6, 0, 13))
VARIANTS = ('relu', 'smooth')
DTYPES = ('float32', 'float64')
TERMS = ('total', 'explainer', 'audience')


def measure(config, workdir: str, points: list[int], variant: str, dtype: str) -> dict:
  """hvp and every radius's finite difference at every point (in this process)."""
  import jax
  import jax.numpy as jnp

  from lease_jax import builders, hypergrad, hypergrad_study
  if variant == 'smooth':
    config.explainer.impl = 'smooth'
  search, train, val = hypergrad_study.setup(config)
  problem = search.spec.problem
  cast = lambda tree: jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
  flat = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64))
                                      for x in jax.tree.leaves(tree)]).tolist()
  rows = []
  for point in points:
    state = cast(hypergrad_study.load_point(workdir, point))
    inputs = hypergrad_study.hypergradient_inputs(
        search.spec, state, cast(builders.to_device(train.batch(point))),
        cast(builders.to_device(val.batch(point))))
    inputs['delta0'] = cast(inputs['delta0'])
    row = {'point': point}
    result = hypergrad.hypergradient('hvp', problem, **inputs)
    row['hvp'] = {term: flat(getattr(result, term)) for term in TERMS}
    for radius in RADII:
      result = hypergrad.hypergradient('finite_difference', problem,
                                       fd_radius=np.asarray(radius, dtype), **inputs)
      row[f'fd_{radius:.3g}'] = {term: flat(getattr(result, term)) for term in TERMS}
    rows.append(row)
    print(f'{variant} {dtype}: point {point} done', flush=True)
  return {'variant': variant, 'dtype': dtype, 'rows': rows}


def relative_error(got, truth) -> float:
  got, truth = np.asarray(got), np.asarray(truth)
  norm = np.linalg.norm(truth)
  return float(np.linalg.norm(got - truth) / norm) if norm > 0 else float('nan')


def curve_table(curves: dict) -> list[dict]:
  """Rows (variant, dtype, point, radius or 'hvp', term, relative error against the float64 hvp
  of the same variant)."""
  table = []
  for variant in VARIANTS:
    truth_rows = curves.get((variant, 'float64'))
    if truth_rows is None:
      continue
    for dtype in DTYPES:
      rows = curves.get((variant, dtype))
      if rows is None:
        continue
      for row, truth in zip(rows, truth_rows):
        for key, grads in row.items():
          if key == 'point':
            continue
          for term in TERMS:
            table.append({'variant': variant, 'dtype': dtype, 'point': row['point'],
                          'radius': key[3:] if key.startswith('fd_') else 'hvp', 'term': term,
                          'relerr': relative_error(grads[term], truth['hvp'][term])})
  return table


def write_outputs(out: str, table: list[dict], command: str) -> None:
  with open(os.path.join(out, 'fd_error_curve.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
  styles = {('relu', 'float32'): 'C3-', ('relu', 'float64'): 'C3--',
            ('smooth', 'float32'): 'C0-', ('smooth', 'float64'): 'C0--'}
  lines = [f'Command: `{command}`', '',
           'Relative error against the float64 hvp of the same variant, median over the points:',
           '']
  header = '| variant | dtype | term | hvp | ' + ' | '.join(f'r={r:.0e}' for r in RADII) + ' |'
  lines += [header, '|' + '---|' * (4 + len(RADII))]
  for col, term in enumerate(TERMS):
    for (variant, dtype), style in styles.items():
      sel = [r for r in table if (r['variant'], r['dtype'], r['term']) == (variant, dtype, term)]
      if not sel:
        continue
      median = lambda key: float(np.median([r['relerr'] for r in sel if r['radius'] == key]))
      errors = [median(f'{radius:.3g}') for radius in RADII]
      axes[col].loglog(RADII, np.maximum(errors, 1e-17), style, marker='o', ms=3,
                       label=f'{variant}, {dtype}')
      lines.append(f'| {variant} | {dtype} | {term} | {median("hvp"):.2g} | '
                   + ' | '.join(f'{e:.2g}' for e in errors) + ' |')
    axes[col].axvline(0.01, color='grey', lw=0.8)
    axes[col].set_title(f'{term} term')
    axes[col].set_xlabel('radius numerator r (DARTS: 0.01)')
  axes[0].set_ylabel('relative error of the finite difference')
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out, 'fd_error_curve.png'), dpi=110)
  plt.close(fig)
  with open(os.path.join(out, 'fd_error_curve.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True, help='a lease-compare-grads workdir')
  parser.add_argument('--points', default='0', help='comma-separated kept steps')
  parser.add_argument('--out', required=True)
  parser.add_argument('--child', default='', help='internal: variant,dtype')
  args, config_args = parser.parse_known_args()
  config_file = next((a.split('=', 1)[1] for a in config_args if a.startswith('--config=')), None)
  if config_file is None:
    parser.error('--config=<file> is required')
  overrides = [a for a in config_args if a.startswith('--config.')]
  points = [int(p) for p in args.points.split(',')]
  os.makedirs(args.out, exist_ok=True)
  if args.child:
    variant, dtype = args.child.split(',')
    import jax
    jax.config.update('jax_enable_x64', dtype == 'float64')
    jax.config.update('jax_default_matmul_precision', 'highest')  # no TF32 on accelerators
    from lease_jax import cli_utils
    cli_utils.setup_jax()
    config = cli_utils.load_config(config_file, overrides)
    result = measure(config, args.workdir, points, variant, dtype)
    from lease_jax import writers
    writers.write_json_atomic(os.path.join(args.out, f'curve_{variant}_{dtype}.json'), result)
    return
  from lease_jax import cli_utils, hypergrad_study
  cli_utils.setup_jax()
  config = cli_utils.load_config(config_file, overrides)
  os.makedirs(args.workdir, exist_ok=True)
  missing = [p for p in points if p not in hypergrad_study.comparison_points(config)]
  if missing:
    parser.error(f'--points {missing} are not comparison points of the config '
                 f'(every {config.compare.every} steps, {config.compare.points} points)')
  hypergrad_study.run_trajectory(config, args.workdir)
  curves = {}
  for variant in VARIANTS:
    for dtype in DTYPES:
      path = os.path.join(args.out, f'curve_{variant}_{dtype}.json')
      if not os.path.exists(path):
        subprocess.run([sys.executable, __file__, f'--workdir={args.workdir}',
                        f'--points={args.points}', f'--out={args.out}',
                        f'--child={variant},{dtype}', *config_args], check=True)
      with open(path) as f:
        curves[(variant, dtype)] = json.load(f)['rows']
  command = 'python experiments/fd_error_curve.py ' + ' '.join(sys.argv[1:])
  write_outputs(args.out, curve_table(curves), command)
  print(open(os.path.join(args.out, 'fd_error_curve.md')).read())


if __name__ == '__main__':
  main()
