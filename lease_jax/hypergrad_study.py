"""Exact against approximate hypergradients: the settings compared, the states they are compared
at, and the comparison (used by `lease-compare-grads`, `lease_jax/compare.py`, and by
`experiments/fd_error_curve.py`).

The settings (`parse_setting`):

  exact, hvp, first_order        the modes of `hypergrad.hypergradient`
  fd_<r>                         finite differences at radius r/‖v‖ (DARTS: fd_0.01)
  official_sign                  hvp with the official code's explanations (label target, one
                                 detached sign step: the audience term is exactly 0)
  unroll_<K>                     hvp through K unrolled steps at every level (explainer,
                                 explanation, audience: `hypergrad.explainer_steps` etc.)
  unroll_<K>_<J>_<M>             K explainer, J explanation and M audience steps
  cg_<n>, neumann_<n>            the implicit hypergradient at the one-step iterates, every
                                 inverse by n conjugate-gradient steps or n Neumann terms
                                 (`hypergrad.implicit_*`: the config's damping and scale)
  darts2_<any of the above>      the same with γ = 0: DARTS-2nd's own objective

Each is compared with its reference — `compare.reference` when the config names one and it was
computed (e.g. a long unroll standing in for the converged hypergradient), else `exact` if it
was computed, else `hvp` (with the darts2_ prefix for the darts2_ settings) — per term (total, explainer, audience): cosine, relative
error, the fraction of α entries whose gradient sign agrees, and the fraction of edges whose most
favoured operation (the most negative gradient entry of the edge's row) agrees.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
import pickle
import resource
import time

import numpy as np

TERMS = ('total', 'explainer', 'audience')
BASE_SETTINGS = ('exact', 'hvp', 'first_order', 'official_sign')


@dataclasses.dataclass(frozen=True)
class Setting:
  """How one hypergradient is computed: a mode, its radius, and the objective's options."""

  name: str
  mode: str
  radius: float | None = None  # finite_difference only: r = radius / ‖v‖
  darts2: bool = False         # γ = 0
  official_sign: bool = False  # the official code's explanations
  steps: tuple[int, int, int] = (1, 1, 1)  # explainer, explanation, audience steps unrolled
  solver: str | None = None    # implicit only: 'cg' | 'neumann'
  iterations: int | None = None

  def references(self, preferred: str = '') -> tuple[str, ...]:
    """The settings this one is compared against, in order of preference (`preferred`: the
    config's `compare.reference`, a name without the darts2_ prefix)."""
    prefix = 'darts2_' if self.darts2 else ''
    return tuple(f'{prefix}{name}' for name in (preferred, 'exact', 'hvp') if name)

  @property
  def reference(self) -> tuple[str, ...]:
    return self.references()


def parse_setting(name: str) -> Setting:
  """`Setting` of a name (see the module docstring); a one-line error names what is accepted."""
  from lease_jax import errors
  darts2 = name.startswith('darts2_')
  base = name[len('darts2_'):] if darts2 else name
  if base in ('exact', 'hvp', 'first_order'):
    return Setting(name, base, darts2=darts2)
  if base == 'official_sign' and not darts2:
    return Setting(name, 'hvp', official_sign=True)
  if base.startswith('fd_'):
    try:
      radius = float(base[3:])
    except ValueError:
      radius = -1.0
    if radius > 0:
      return Setting(name, 'finite_difference', radius, darts2=darts2)
  counts = _positive_ints(base.split('_')[1:])
  if base.startswith('unroll_') and counts and len(counts) in (1, 3):
    return Setting(name, 'hvp', darts2=darts2, steps=tuple(counts * 3 if len(counts) == 1
                                                           else counts))
  solver = base.split('_')[0]
  if solver in ('cg', 'neumann') and counts and len(counts) == 1:
    return Setting(name, 'implicit', darts2=darts2, solver=solver, iterations=counts[0])
  raise errors.UserError(
      f'compare.settings: {name!r}; accepted: exact, hvp, first_order, official_sign, fd_<r> '
      f'(r > 0, e.g. fd_0.01), unroll_<K> or unroll_<K>_<J>_<M>, cg_<n>, neumann_<n> (integers '
      f'>= 1), each but official_sign also with the prefix darts2_ (γ = 0)')


def _positive_ints(parts: list[str]) -> list[int] | None:
  """[int(p) for p in parts] when every part is an integer >= 1 (and there is one), else None."""
  if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
    return None
  return [int(p) for p in parts]


def check_compare_block(config) -> list[Setting]:
  """The `compare` block's settings; a one-line error names a bad value and what is accepted."""
  from lease_jax import errors, kernels
  compare = config.compare
  settings = [parse_setting(name) for name in compare.settings]
  if compare.get('reference') and compare.reference not in [
      s.name for s in settings if not s.darts2]:
    raise errors.UserError(f'compare.reference = {compare.reference!r}; accepted: \'\' (exact, '
                           f'else hvp) or one of compare.settings')
  if compare.get('exact_impl') and compare.exact_impl not in kernels.IMPLS:
    raise errors.UserError(f'compare.exact_impl = {compare.exact_impl!r}; accepted: '
                              f"'' (explainer.impl), {', '.join(kernels.IMPLS)}")
  if compare.points < 1 or compare.every < 1:
    raise errors.UserError(f'compare.points = {compare.points}, compare.every = '
                              f'{compare.every}; both must be >= 1')
  return settings


def setting_config(config, setting: Setting):
  """The config a setting computes with (γ = 0 for darts2_, the official explanations, the
  `exact` program's kernels: `compare.exact_impl`)."""
  from lease_jax.configs import lease_official_code
  config = config.copy_and_resolve_references()
  if setting.mode == 'exact' and config.compare.get('exact_impl'):
    config.explainer.impl = config.compare.exact_impl
  if setting.darts2:
    config.search.gamma = 0.0
  if setting.official_sign:
    config.explanation.update(lease_official_code.get_config().explanation.to_dict())
  if setting.steps != (1, 1, 1):
    config.hypergrad.update(dict(zip(('explainer_steps', 'explanation_steps', 'audience_steps'),
                                     setting.steps)))
  if setting.solver is not None:
    config.hypergrad.update(implicit_solver=setting.solver,
                            implicit_iterations=setting.iterations)
  return config


def _flat(tree) -> np.ndarray:
  import jax
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def _rows(tree) -> np.ndarray:
  """Every α array's rows (edges) stacked: [edges, ops]."""
  import jax
  return np.concatenate([np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
                         for x in jax.tree.leaves(tree)])


def setup(config):
  """(search, train stream, val stream) of a config."""
  from lease_jax import builders, data
  info, train_source, _ = data.load_sources(config.data)
  train, val = builders.search_streams(config, info, train_source)
  search = builders.build_search(config, info, train.steps_per_epoch)
  return search, train, val


def comparison_points(config) -> list[int]:
  return [i * config.compare.every for i in range(config.compare.points)]


def run_trajectory(config, workdir: str) -> list[int]:
  """Runs the search and keeps its state at the comparison points; an interrupted trajectory
  resumes from its latest kept state (a step is a function of the state and the step's
  batches, so the states that follow are the uninterrupted run's)."""
  import jax

  from lease_jax import builders, lease
  points = comparison_points(config)
  paths = {p: os.path.join(workdir, f'state_{p}.pkl') for p in points}
  kept = list(itertools.takewhile(lambda p: os.path.exists(paths[p]), points))
  if len(kept) == len(points):
    return points
  search, train, val = setup(config)
  if kept:
    start, state = kept[-1], load_point(workdir, kept[-1])
    print(f'resuming the trajectory from its state at step {start}', flush=True)
  else:
    start, state = 0, search.init_state(config.seed)
  step_fn = lease.make_step(search.spec, config.search.jit_whole_step)
  for step in range(start, points[-1] + 1):
    if step in paths and not os.path.exists(paths[step]):
      with open(paths[step] + '.tmp', 'wb') as f:
        pickle.dump(jax.device_get(state), f)
      os.replace(paths[step] + '.tmp', paths[step])
      print(f'kept the state at step {step}', flush=True)
    if step < points[-1]:
      state, _ = step_fn(state, builders.to_device(train.batch(step)),
                         builders.to_device(val.batch(step)))
  return points


def load_point(workdir: str, point: int):
  import jax
  with open(os.path.join(workdir, f'state_{point}.pkl'), 'rb') as f:
    return jax.device_put(pickle.load(f))


def hypergradient_inputs(spec, state, train_batch, val_batch) -> dict:
  """The keyword arguments of `hypergrad.hypergradient` at a state: the step's own δ0."""
  from lease_jax import lease
  return dict(E=state.explainer, A=state.alphas, W=state.audience,
              explainer_state=state.explainer_opt_state,
              audience_state=state.audience_opt_state, train=train_batch, val=val_batch,
              delta0=lease.virtual_start(spec, state, train_batch['image']))


def setting_function(problem, setting: Setting):
  """`f(radius, **hypergradient_inputs) -> Hypergradient` for a setting: `exact` and
  `first_order` as one jitted program (named `jit_compute`, the name its persistent-cache entry
  carries); hvp and finite differences run their jitted pieces, as the search does. The radius
  is an argument, so every fd_<r> shares its programs."""
  import jax

  from lease_jax import hypergrad

  def compute(radius, **kw):
    return hypergrad.hypergradient(setting.mode, problem, fd_radius=radius, **kw)

  return jax.jit(compute) if setting.mode in ('exact', 'first_order') else compute


def inputs_at(search, train, val, workdir: str, point: int):
  """(kept state, `hypergradient_inputs`) at a kept step of a comparison workdir."""
  from lease_jax import builders
  state = load_point(workdir, point)
  return state, hypergradient_inputs(search.spec, state, builders.to_device(train.batch(point)),
                                     builders.to_device(val.batch(point)))


def measure_setting(config, workdir: str, setting: Setting, points: list[int]) -> dict:
  """∇_A O_A by `setting` at every kept state (run in a process of its own)."""
  import jax

  search, train, val = setup(setting_config(config, setting))
  fn = setting_function(search.spec.problem, setting)
  radius = None if setting.radius is None else np.float32(setting.radius)
  rows, run_s, compile_s = [], [], 0.0
  for point in points:
    state, kw = inputs_at(search, train, val, workdir, point)
    start = time.perf_counter()
    result = jax.block_until_ready(fn(radius, **kw))
    seconds = time.perf_counter() - start
    if point == points[0]:  # the first call compiles: time a second one
      start = time.perf_counter()
      result = jax.block_until_ready(fn(radius, **kw))
      again = time.perf_counter() - start
      compile_s, seconds = max(seconds - again, 0.0), again
    run_s.append(seconds)
    rows.append({term: _flat(getattr(result, term)).tolist() for term in TERMS})
  shapes = [list(np.shape(x)) for x in jax.tree.leaves(state.alphas)]
  return {'setting': setting.name, 'grads': rows, 'alpha_shapes': shapes,
          'compile_s': compile_s, 'run_s': float(np.median(run_s)),
          'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def agreement(got: np.ndarray, ref: np.ndarray, shapes) -> dict:
  """Cosine, relative error, sign agreement and per-edge argmin agreement of two gradients."""
  ng, nr = np.linalg.norm(got), np.linalg.norm(ref)
  split = lambda flat: np.concatenate([part.reshape(-1, shape[-1]) for part, shape in zip(
      np.split(flat, np.cumsum([int(np.prod(s)) for s in shapes])[:-1]), shapes)])
  favoured = lambda flat: np.argmin(split(flat), axis=1)
  nan = float('nan')
  both = ng > 0 and nr > 0  # a zero gradient (a term a setting lacks) has no direction
  return {
      'cos': float(got @ ref / (ng * nr)) if both else nan,
      'relerr': float(np.linalg.norm(got - ref) / nr) if nr > 0 else nan,
      'sign_agree': float(np.mean(np.sign(got) == np.sign(ref))) if both else nan,
      'edge_agree': float(np.mean(favoured(got) == favoured(ref))) if both else nan,
      'norm': float(ng),
  }


def reference_of(setting: Setting, results: dict, preferred: str = '') -> str | None:
  return next((name for name in setting.references(preferred)
               if results.get(name, {}).get('grads')), None)


def comparison_table(settings: list[Setting], results: dict, points: list[int],
                     preferred: str = '') -> list[dict]:
  """One row per (setting, point): each term's agreement with the setting's reference."""
  table = []
  for setting in settings:
    result = results[setting.name]
    reference = reference_of(setting, results, preferred)
    if not result.get('grads') or reference is None:
      continue
    for k, point in enumerate(points):
      row = {'setting': setting.name, 'reference': reference, 'step': point}
      for term in TERMS:
        got = np.asarray(result['grads'][k][term])
        ref = np.asarray(results[reference]['grads'][k][term])
        for key, value in agreement(got, ref, result['alpha_shapes']).items():
          row[f'{key}_{term}'] = value
      row.update(compile_s=result['compile_s'], run_s=result['run_s'],
                 peak_rss_gib=result['peak_rss_gib'])
      table.append(row)
  return table


def write_report(config, workdir: str, points: list[int], settings: list[Setting],
                 results: dict, command: str) -> None:
  from lease_jax import writers
  table = comparison_table(settings, results, points, config.compare.get('reference', ''))
  if table:
    with open(os.path.join(workdir, 'compare.csv'), 'w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=list(table[0]))
      writer.writeheader()
      writer.writerows(table)
  failures = {name: r['failed'] for name, r in results.items() if r.get('failed')}
  exact_kernels = (f'; exact: {config.compare.exact_impl}' if config.compare.get('exact_impl')
                   and any(s.mode == 'exact' for s in settings) else '')
  writers.write_json_atomic(os.path.join(workdir, 'compare.json'), {
      'config': config.to_dict(), 'points': points, 'rows': table, 'failed': failures,
      'timing': {name: {k: r.get(k) for k in ('compile_s', 'run_s', 'peak_rss_gib')}
                 for name, r in results.items()}}, indent=1, default=str)
  preferred = config.compare.get('reference', '')
  lines = [f'# Hypergradients against {f"the reference ({preferred})" if preferred else "the exact one"} '
           f'({time.strftime("%Y-%m-%d")})', '',
           f'Command: `{command}`', '',
           f'Setup: {config.data.name} ({config.data.source}), supernet {config.explainer.layers} '
           f'cells C={config.explainer.channels} (kernels {config.explainer.impl}'
           f'{exact_kernels}), ResNet-18 '
           f'audience width {config.audience.width}, batch {config.search.batch_size}, '
           f'γ={config.search.gamma}, explanation {config.explanation.target} target from '
           f'{config.explanation.start} δ0, audience input {config.explanation.audience_input}; '
           f'{len(points)} points of a {config.search.mode} trajectory (steps {points[0]}..'
           f'{points[-1]}, every {config.compare.every}); {os.cpu_count()} CPU cores.', '',
           'Mean over the points (min..max for the cosine). sign: fraction of α entries whose '
           'gradient sign agrees with the reference; edge: fraction of edges whose most '
           'favoured operation (most negative entry) agrees.', '']
  for term in TERMS:
    lines += [f'## {term} term', '',
              '| setting | reference | cosine | rel. error | sign | edge | ‖g‖ |',
              '|---|---|---|---|---|---|---|']
    for setting in settings:
      rows = [r for r in table if r['setting'] == setting.name]
      if not rows:
        continue
      mean = lambda key: float(np.nanmean([r[key] for r in rows]))
      cosines = [r[f'cos_{term}'] for r in rows]
      lines.append(f'| {setting.name} | {rows[0]["reference"]} | {mean(f"cos_{term}"):.4f} '
                   f'({np.nanmin(cosines):.3f}..{np.nanmax(cosines):.3f}) | '
                   f'{mean(f"relerr_{term}"):.3g} | {mean(f"sign_agree_{term}"):.3f} | '
                   f'{mean(f"edge_agree_{term}"):.3f} | {mean(f"norm_{term}"):.3g} |')
    lines.append('')
  lines += ['## Cost (each setting in its own process)', '',
            '| setting | compile s | run s | peak RSS GiB | status |', '|---|---|---|---|---|']
  for setting in settings:
    r = results[setting.name]
    status = r.get('failed') or 'ok'
    fmt = lambda key, spec: format(r[key], spec) if r.get(key) is not None else '–'
    lines.append(f'| {setting.name} | {fmt("compile_s", ".1f")} | {fmt("run_s", ".2f")} | '
                 f'{fmt("peak_rss_gib", ".2f")} | {status} |')
  with open(os.path.join(workdir, 'compare.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  if table:
    _plot(table, settings, points, os.path.join(workdir, 'compare.png'))


def _plot(table, settings, points, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, 3, figsize=(15, 7), sharex=True)
  for col, term in enumerate(TERMS):
    for setting in settings:
      rows = [r for r in table if r['setting'] == setting.name]
      if not rows or rows[0]['reference'] == setting.name:
        continue
      steps = [r['step'] for r in rows]
      axes[0, col].plot(steps, [r[f'cos_{term}'] for r in rows], 'o-', ms=3, label=setting.name)
      axes[1, col].semilogy(steps, [max(r[f'relerr_{term}'], 1e-12) for r in rows], 'o-', ms=3,
                            label=setting.name)
    axes[0, col].set_title(f'{term} term: cosine to the reference')
    axes[1, col].set_title(f'{term} term: relative error')
    axes[1, col].set_xlabel('search step')
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
