"""Compare the four hypergradient modes along a short search trajectory.

  lease-compare-grads --config=configs/compare_hypergrads.py --workdir=experiments/results/compare

1. A short search (`config.search.mode`, usually hvp) runs from the config's initial state; the
   state at K points of it is saved (`config.compare.points` steps apart by `...every`).
2. Each mode computes ∇_A O_A at every saved state with the same batches and the same δ0, in its
   own process, so that its compile time, wall time and peak memory are its own.
3. Against `exact`: cosine similarity and relative error of the whole gradient and of its
   explainer and audience terms, per point. Written as `compare.md`, `compare.csv`, `compare.json`
   and `compare.png` in the workdir.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import resource
import subprocess
import sys
import time

import numpy as np

MODES = ('exact', 'hvp', 'finite_difference', 'first_order')
TERMS = ('total', 'explainer', 'audience')


def _flat(tree) -> np.ndarray:
  import jax
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def _setup(config):
  from lease_jax import builders, data
  info, train_source, _ = data.load_sources(config.data)
  train, val = builders.search_streams(config, info, train_source)
  search = builders.build_search(config, info, train.steps_per_epoch)
  return search, train, val


def run_trajectory(config, workdir: str) -> list[int]:
  """Runs the short search and saves the states at the comparison points."""
  import jax

  from lease_jax import builders, lease
  search, train, val = _setup(config)
  state = search.init_state(config.seed)
  step_fn = lease.make_step(search.spec, config.search.jit_whole_step)
  points = [i * config.compare.every for i in range(config.compare.points)]
  for step in range(points[-1] + 1):
    if step in points:
      with open(os.path.join(workdir, f'state_{step}.pkl'), 'wb') as f:
        pickle.dump(jax.device_get(state), f)
      print(f'saved the state at step {step}', flush=True)
    if step < points[-1]:
      state, _ = step_fn(state, builders.to_device(train.batch(step)),
                         builders.to_device(val.batch(step)))
  return points


def measure_mode(config, workdir: str, mode: str, points: list[int]) -> dict:
  """∇_A O_A by `mode` at every saved state (run in a fresh process)."""
  import jax

  from lease_jax import builders, hypergrad, lease
  search, train, val = _setup(config)
  problem = search.spec.problem
  spec = search.spec
  rows, compile_s, run_s = [], 0.0, []
  for point in points:
    with open(os.path.join(workdir, f'state_{point}.pkl'), 'rb') as f:
      state = jax.device_put(pickle.load(f))
    tb, vb = builders.to_device(train.batch(point)), builders.to_device(val.batch(point))
    delta0 = lease.virtual_start(spec, state, tb['image'])
    kw = dict(E=state.explainer, A=state.alphas, W=state.audience,
              explainer_state=state.explainer_opt_state,
              audience_state=state.audience_opt_state, train=tb, val=vb, delta0=delta0)
    fn = (jax.jit(lambda **k: hypergrad.hypergradient(mode, problem, **k))
          if mode in ('exact', 'first_order') else
          (lambda **k: hypergrad.hypergradient(mode, problem, **k)))
    start = time.perf_counter()
    result = jax.block_until_ready(fn(**kw))
    first = time.perf_counter() - start
    if point == points[0]:
      start = time.perf_counter()
      result = jax.block_until_ready(fn(**kw))
      again = time.perf_counter() - start
      compile_s = max(first - again, 0.0)
      run_s.append(again)
    else:
      run_s.append(first)
    rows.append({term: _flat(getattr(result, term)).tolist() for term in TERMS})
  return {'mode': mode, 'grads': rows, 'compile_s': compile_s, 'run_s': float(np.median(run_s)),
          'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _compare(a: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
  na, nr = np.linalg.norm(a), np.linalg.norm(ref)
  cosine = float(a @ ref / (na * nr)) if na > 0 and nr > 0 else float('nan')
  rel = float(np.linalg.norm(a - ref) / nr) if nr > 0 else float('nan')
  return cosine, rel


def write_report(config, workdir: str, points: list[int], results: dict, command: str) -> None:
  exact = results['exact']
  table = []
  for mode in MODES:
    res = results[mode]
    for k, point in enumerate(points):
      row = {'mode': mode, 'step': point}
      for term in TERMS:
        ref = np.asarray(exact['grads'][k][term])
        got = np.asarray(res['grads'][k][term])
        row[f'cos_{term}'], row[f'relerr_{term}'] = _compare(got, ref)
        row[f'norm_{term}'] = float(np.linalg.norm(got))
      row.update(compile_s=res['compile_s'], run_s=res['run_s'], peak_rss_gib=res['peak_rss_gib'])
      table.append(row)
  with open(os.path.join(workdir, 'compare.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
  with open(os.path.join(workdir, 'compare.json'), 'w') as f:
    json.dump({'config': config.to_dict(), 'points': points, 'rows': table}, f, indent=1)
  lines = [f'# Hypergradient modes against `exact` ({time.strftime("%Y-%m-%d")})', '',
           f'Command: `{command}`', '',
           f'Setup: {config.data.name} ({config.data.source}), supernet {config.explainer.layers} '
           f'cells C={config.explainer.channels}, ResNet-18 audience width '
           f'{config.audience.width}, batch {config.search.batch_size}, γ={config.search.gamma}, '
           f'explanation {config.explanation.target} target, ξ_Δ={config.explanation.step_size}; '
           f'{len(points)} points of a {config.search.mode} trajectory (steps {points}); '
           f'{os.cpu_count()} CPU cores.', '',
           '## Per mode (mean over points)', '',
           '| mode | cos total | rel err total | cos explainer | rel err explainer | cos audience '
           '| rel err audience | compile s | run s | peak RSS GiB |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for mode in MODES:
    rows = [r for r in table if r['mode'] == mode]
    mean = lambda key: np.nanmean([r[key] for r in rows])
    lines.append(
        f'| {mode} | {mean("cos_total"):.4f} | {mean("relerr_total"):.3g} | '
        f'{mean("cos_explainer"):.4f} | {mean("relerr_explainer"):.3g} | '
        f'{mean("cos_audience"):.4f} | {mean("relerr_audience"):.3g} | '
        f'{rows[0]["compile_s"]:.1f} | {rows[0]["run_s"]:.2f} | {rows[0]["peak_rss_gib"]:.2f} |')
  lines += ['', '## Per point', '', '| mode | step | ‖∇‖ | ‖explainer‖ | ‖audience‖ | cos total '
            '| rel err total |', '|---|---|---|---|---|---|---|']
  for r in table:
    lines.append(f'| {r["mode"]} | {r["step"]} | {r["norm_total"]:.4g} | '
                 f'{r["norm_explainer"]:.4g} | {r["norm_audience"]:.4g} | {r["cos_total"]:.4f} | '
                 f'{r["relerr_total"]:.3g} |')
  with open(os.path.join(workdir, 'compare.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  _plot(table, points, os.path.join(workdir, 'compare.png'))


def _plot(table, points, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, 3, figsize=(14, 7), sharex=True)
  for col, term in enumerate(TERMS):
    for mode in MODES[1:]:
      rows = [r for r in table if r['mode'] == mode]
      axes[0, col].plot(points, [r[f'cos_{term}'] for r in rows], 'o-', label=mode)
      axes[1, col].semilogy(points, [max(r[f'relerr_{term}'], 1e-12) for r in rows], 'o-',
                            label=mode)
    axes[0, col].set_title(f'{term} term: cosine to exact')
    axes[1, col].set_title(f'{term} term: relative error')
    axes[1, col].set_xlabel('search step')
  axes[0, 0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> None:
  from absl import app, flags
  from ml_collections import config_flags

  from lease_jax import cli_utils

  config_flags.DEFINE_config_file(
      'config', cli_utils.config_path('compare_hypergrads'), 'Experiment config.',
      lock_config=True)
  flags.DEFINE_string('workdir', 'experiments/results/compare', 'Output directory.')
  flags.DEFINE_string('child_mode', '', 'Internal: measure one mode in this process.')
  flags.DEFINE_string('points', '', 'Internal: the saved points.')

  def run(_):
    cfg, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    cli_utils.setup_jax(cfg)
    os.makedirs(workdir, exist_ok=True)
    if flags.FLAGS.child_mode:
      points = [int(p) for p in flags.FLAGS.points.split(',')]
      result = measure_mode(cfg, workdir, flags.FLAGS.child_mode, points)
      with open(os.path.join(workdir, f'mode_{flags.FLAGS.child_mode}.json'), 'w') as f:
        json.dump(result, f)
      return
    points = run_trajectory(cfg, workdir)
    results = {}
    for mode in MODES:
      print(f'measuring {mode} ...', flush=True)
      args = [sys.executable, '-m', 'lease_jax.compare', f'--workdir={workdir}',
              f'--child_mode={mode}', f'--points={",".join(map(str, points))}']
      args += [a for a in sys.argv[1:] if a.startswith('--config')]
      subprocess.run(args, check=True)
      with open(os.path.join(workdir, f'mode_{mode}.json')) as f:
        results[mode] = json.load(f)
      print(f'  {mode}: compile {results[mode]["compile_s"]:.1f} s, run '
            f'{results[mode]["run_s"]:.2f} s, peak {results[mode]["peak_rss_gib"]:.2f} GiB',
            flush=True)
    command = 'lease-compare-grads ' + ' '.join(sys.argv[1:])
    write_report(cfg, workdir, points, results, command)
    for name in os.listdir(workdir):
      if name.startswith(('state_', 'mode_')):
        os.remove(os.path.join(workdir, name))
    print(open(os.path.join(workdir, 'compare.md')).read())

  app.run(run, argv=argv)


if __name__ == '__main__':
  main()
