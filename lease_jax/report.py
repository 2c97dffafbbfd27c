"""Reports over sets of search runs (`lease-report`): tables, edge frequencies and seed bands.

Given run directories (each a `lease-search` workdir: `config.json`, `summary.json`,
`history.jsonl`), runs are grouped by what they searched — the space, the dataset, the base
method, the hypergradient mode and γ (`method_of`) — and each group is summarised over its seeds:

  report.md, report.csv  per group: seeds, finished runs, the final explainer and audience
                         validation accuracies (mean ± std over seeds), search time, and with a
                         benchmark table the looked-up columns of the final cells (mean ± std)
  edges.csv              per group, edge and operation: how many seeds chose it
  runs.csv               one row per run: its group, seed, directory, status, steps, the final
                         (or, unfinished, the latest epoch's) cell and accuracies, search time,
                         the operation's share of the cell and the looked-up benchmark columns;
                         also listed in report.md
  plots/accuracy.png     explainer / audience validation accuracy per epoch, mean and a band of
                         ± one std over seeds, one colour per group
  plots/grad_norm.png    ‖∇_A‖ per epoch by term (total, explainer, audience), likewise
  plots/<op>_share.png   the share of the derived cell's edges that are `<op>` (default
                         `skip_connect`) per epoch, likewise

Unfinished runs (no `summary.json`, or `"finished": false`) are listed in `report.md` and left out
of every mean. Nothing here runs a network: it reads files.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from lease_jax import errors, search_space


@dataclasses.dataclass
class Run:
  """One run directory, read."""

  path: str
  config: dict
  summary: dict | None
  history: list[dict]

  @property
  def finished(self) -> bool:
    return bool(self.summary and self.summary.get('finished'))

  @property
  def seed(self) -> int:
    return int(self.config.get('seed', 0))


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise errors.UserError(f'{path}: not readable JSON ({e})') from None


def read_run(path: str) -> Run:
  """A run directory; one line names what is missing (`config.json` is required)."""
  if not os.path.isdir(path):
    raise errors.UserError(f'{path!r} is not a directory (a lease-search --workdir)')
  config_path = os.path.join(path, 'config.json')
  if not os.path.exists(config_path):
    raise errors.UserError(f'{path!r} has no config.json: not a lease-search workdir')
  config = _read_json(config_path)
  summary_path = os.path.join(path, 'summary.json')
  summary = _read_json(summary_path) if os.path.exists(summary_path) else None
  history = []
  history_path = os.path.join(path, 'history.jsonl')
  if os.path.exists(history_path):
    with open(history_path) as f:
      for line in f:
        try:
          history.append(json.loads(line))
        except json.JSONDecodeError:
          break  # a line cut by a crash mid-write: the rest is not there
  return Run(path, config, summary, history)


def expand(patterns: Sequence[str]) -> list[str]:
  """Run directories from paths and glob patterns, sorted, each once (a pattern's matches that
  are not directories, such as the runs' log files beside them, are passed over)."""
  paths = []
  for pattern in patterns:
    matches = sorted(glob.glob(os.path.expanduser(pattern)))
    if glob.has_magic(pattern):
      matches = [m for m in matches if os.path.isdir(m)]
    if not matches:
      raise errors.UserError(f'{pattern!r} matches no run directory')
    paths += [m for m in matches if m not in paths]
  return paths


def method_of(config: Mapping[str, Any]) -> str:
  """A group's name: space, dataset, base method, mode and γ, e.g.
  `nb201 cifar10 darts: DARTS-2nd (finite_difference)` or `darts digits pc_darts: LeaSE (hvp)`."""
  search = config.get('search', {})
  mode, gamma = search.get('mode', 'hvp'), float(search.get('gamma', 1.0))
  base = config.get('explainer', {}).get('base', 'darts')
  if gamma > 0:
    name = f'LeaSE ({mode}, γ={gamma:g})' if gamma != 1 else f'LeaSE ({mode})'
  elif mode == 'first_order':
    name = 'first order'
  else:
    name = f'second order ({mode})'
  prefix = {'darts': 'DARTS', 'pc_darts': 'PC-DARTS'}.get(base, base)
  if gamma > 0:
    prefix = f'{prefix} base'
  data = config.get('data', {})
  dataset = data.get('name', '')
  return f'{config.get("space", "darts")} {dataset}: {prefix} {name}'


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
  groups: dict[str, list[Run]] = {}
  for run in runs:
    groups.setdefault(method_of(run.config), []).append(run)
  return {k: sorted(v, key=lambda r: r.seed) for k, v in sorted(groups.items())}


def cell_edges(cell: Mapping[str, Any]) -> list[tuple[str, str]]:
  """(edge, operation) of a derived cell's JSON (`genotype.json` / a history entry's)."""
  if 'arch' in cell:
    arch = search_space.Nb201Arch.from_string(cell['arch'])
    return [(f'{j}->{i}', op) for (i, j), op in zip(search_space.NB201_EDGES, arch.ops)]
  out = []
  for kind in ('normal', 'reduce'):
    for k, (op, source) in enumerate(cell[kind]):
      out.append((f'{kind} node {k // 2} <- {source}', op))
  return out


def op_share(cell: Mapping[str, Any], op: str) -> float:
  """The share of the cell's edges that are `op` (NB201: of its 6; DARTS: of the 8 kept edges of
  the normal cell, where skip connections pile up)."""
  edges = cell_edges(cell)
  if 'arch' not in cell:
    edges = [e for e in edges if e[0].startswith('normal')]
  return sum(o == op for _, o in edges) / len(edges)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for one value)."""
  values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
  if not len(values):
    return float('nan'), float('nan')
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def look_up(table: Mapping[str, Mapping[str, float]] | None, run: Run) -> dict[str, float]:
  if table is None or not run.summary:
    return {}
  arch = run.summary.get('genotype', {}).get('arch')
  return dict(table.get(arch, {})) if arch else {}


def group_rows(groups: Mapping[str, Sequence[Run]],
               table: Mapping[str, Mapping[str, float]] | None = None,
               op: str = 'skip_connect') -> list[dict]:
  """One row per group: counts and mean ± std over its finished runs."""
  rows = []
  for name, runs in groups.items():
    done = [r for r in runs if r.finished]
    row = {'group': name, 'seeds': ' '.join(str(r.seed) for r in done), 'finished': len(done),
           'unfinished': len(runs) - len(done)}
    for key in ('final_explainer_val_acc', 'final_audience_val_acc', 'search_time_s'):
      row[key] = mean_std([r.summary.get(key) for r in done])
    columns = sorted({c for r in done for c in look_up(table, r)})
    for column in columns:
      row[f'benchmark_{column}'] = mean_std([look_up(table, r).get(column) for r in done])
    if done:
      row[f'{op}_share'] = mean_std([op_share(r.summary['genotype'], op) for r in done])
    rows.append(row)
  return rows


def edge_frequencies(groups: Mapping[str, Sequence[Run]]) -> list[dict]:
  """Per group, edge and chosen operation: in how many of its finished seeds the final cell has
  it."""
  rows = []
  for name, runs in groups.items():
    done = [r for r in runs if r.finished]
    counts: dict[tuple[str, str], int] = {}
    for run in done:
      for edge in cell_edges(run.summary['genotype']):
        counts[edge] = counts.get(edge, 0) + 1
    for (edge, op), count in sorted(counts.items()):
      rows.append({'group': name, 'edge': edge, 'operation': op, 'seeds': count,
                   'of': len(done)})
  return rows


def cell_text(cell: Mapping[str, Any]) -> str:
  """A derived cell on one line: NB201's arch string, or DARTS's kept edges per cell type
  (`normal: sep_conv_3x3<-0 skip_connect<-1 ...; reduce: ...`)."""
  if 'arch' in cell:
    return cell['arch']
  return '; '.join(f'{kind}: ' + ' '.join(f'{op}<-{source}' for op, source in cell[kind])
                   for kind in ('normal', 'reduce'))


def run_rows(groups: Mapping[str, Sequence[Run]],
             table: Mapping[str, Mapping[str, float]] | None = None,
             op: str = 'skip_connect') -> list[dict]:
  """One row per run, in the groups' order: a finished run's final cell and values, an unfinished
  one's latest epoch (blank where it has none)."""
  rows = []
  for name, runs in groups.items():
    for run in runs:
      last = run.history[-1] if run.history else {}
      if run.finished:
        cell, step = run.summary.get('genotype'), run.summary.get('step')
        explainer = run.summary.get('final_explainer_val_acc')
        audience = run.summary.get('final_audience_val_acc')
        seconds = run.summary.get('search_time_s')
      else:
        cell, step = last.get('genotype'), last.get('step')
        explainer = last.get('metrics', {}).get('explainer_val_acc')
        audience = last.get('metrics', {}).get('audience_val_acc')
        seconds = last.get('elapsed_s')
      row = {'group': name, 'seed': run.seed, 'run': run.path,
             'status': 'finished' if run.finished else 'unfinished',
             'step': '' if step is None else step,
             'explainer_val_acc': '' if explainer is None else f'{explainer:.4f}',
             'audience_val_acc': '' if audience is None else f'{audience:.4f}',
             'search_time_s': '' if seconds is None else f'{seconds:.1f}',
             f'{op}_share': '' if not cell else f'{op_share(cell, op):.4g}',
             'cell': '' if not cell else cell_text(cell)}
      row.update({f'benchmark_{k}': f'{v:.6g}' for k, v in sorted(look_up(table, run).items())})
      rows.append(row)
  return rows


def _fmt(value) -> str:
  if isinstance(value, tuple):
    mean, std = value
    return '' if np.isnan(mean) else f'{mean:.4g} ± {std:.2g}'
  return str(value)


def _flat(value) -> list[str]:
  return [f'{value[0]:.6g}', f'{value[1]:.6g}'] if isinstance(value, tuple) else [str(value)]


def epoch_band(runs: Sequence[Run], value) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(epochs, mean, std) over the finished runs of `value(history entry)` per epoch (epochs every
  run has; NaN where a run lacks the value)."""
  done = [r for r in runs if r.finished and r.history]
  if not done:
    return np.zeros(0), np.zeros(0), np.zeros(0)
  epochs = min(len(r.history) for r in done)
  values = np.asarray([[value(r.history[e]) for e in range(epochs)] for r in done], np.float64)
  with warnings.catch_warnings():  # an epoch no run has a value for is NaN, said by the plot
    warnings.simplefilter('ignore', RuntimeWarning)
    std = np.nanstd(values, axis=0, ddof=1) if len(done) > 1 else np.zeros(epochs)
    return np.arange(1, epochs + 1), np.nanmean(values, axis=0), std


def _plot(groups, path, title, series, ylabel, log=False):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 4), squeeze=False)
  for ax, (label, value) in zip(axes[0], series):
    for k, (name, runs) in enumerate(groups.items()):
      epochs, mean, std = epoch_band(runs, value)
      # nothing to draw: no epochs, no values, or (log scale) a term the method lacks (DARTS's
      # audience term is 0)
      if not len(epochs) or np.all(np.isnan(mean)) or (log and not np.any(mean > 0)):
        continue
      color = f'C{k % 10}'
      ax.plot(epochs, mean, color=color, marker='o', ms=3, label=name)
      ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
    ax.set_title(label, fontsize=9)
    ax.set_xlabel('epoch')
    ax.set_ylabel(ylabel)
    if log and ax.lines:
      ax.set_yscale('log')
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.suptitle(f'{title} (mean ± std over seeds)')
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(paths: Sequence[str], out: str,
                 table: Mapping[str, Mapping[str, float]] | None = None,
                 op: str = 'skip_connect') -> dict[str, Any]:
  """Reads the runs, writes the report files under `out` (see the module docstring); returns
  {'groups': rows, 'unfinished': paths}."""
  runs = [read_run(p) for p in paths]
  groups = group_runs(runs)
  rows = group_rows(groups, table, op)
  os.makedirs(out, exist_ok=True)
  keys = list(dict.fromkeys(k for row in rows for k in row))
  with open(os.path.join(out, 'report.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    header = []
    for key in keys:
      sample = next((row[key] for row in rows if key in row), None)
      header += [f'{key}_mean', f'{key}_std'] if isinstance(sample, tuple) else [key]
    writer.writerow(header)
    for row in rows:
      line = []
      for key in keys:
        sample = next((r[key] for r in rows if key in r), None)
        value = row.get(key, (float('nan'), float('nan')) if isinstance(sample, tuple) else '')
        line += _flat(value)
      writer.writerow(line)
  edges = edge_frequencies(groups)
  with open(os.path.join(out, 'edges.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, ['group', 'edge', 'operation', 'seeds', 'of'])
    writer.writeheader()
    writer.writerows(edges)
  per_run = run_rows(groups, table, op)
  run_keys = list(dict.fromkeys(k for row in per_run for k in row))
  with open(os.path.join(out, 'runs.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, run_keys, restval='')
    writer.writeheader()
    writer.writerows(per_run)
  unfinished = [r.path for r in runs if not r.finished]
  lines = ['# Runs report', '', f'{len(runs)} runs in {len(groups)} groups; mean ± std over '
           'the finished seeds of each group.', '',
           '| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
  lines += ['| ' + ' | '.join(_fmt(row.get(k, '')) for k in keys) + ' |' for row in rows]
  lines += ['', '## The chosen operation of each edge (seeds that chose it)', '']
  for name in groups:
    chosen = [e for e in edges if e['group'] == name]
    if not chosen:
      continue
    lines.append(f'**{name}**: ' + '; '.join(
        f'{e["edge"]}: {e["operation"]} {e["seeds"]}/{e["of"]}' for e in chosen))
    lines.append('')
  if unfinished:
    lines += ['## Unfinished (not averaged)', ''] + [f'- `{p}`' for p in unfinished] + ['']
  shown = [k for k in run_keys if k not in ('group', 'run')]
  lines += ['## Every run (unfinished: its latest epoch)', '',
            '| group | run | ' + ' | '.join(shown) + ' |', '|' + '---|' * (len(shown) + 2)]
  cells = lambda row: [f'`{row[k]}`'.replace('|', '\\|') if k == 'cell' and row[k] else
                       str(row.get(k, '')) for k in shown]  # `\|`: a pipe inside a table
  lines += ['| ' + ' | '.join([row['group'], os.path.basename(os.path.normpath(row['run']))]
                              + cells(row)) + ' |' for row in per_run] + ['']
  with open(os.path.join(out, 'report.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  metric = lambda key: (lambda entry: entry.get('metrics', {}).get(key, np.nan))
  _plot(groups, os.path.join(out, 'plots', 'accuracy.png'), 'validation accuracy',
        [('explainer', metric('explainer_val_acc')), ('audience', metric('audience_val_acc'))],
        'accuracy')
  _plot(groups, os.path.join(out, 'plots', 'grad_norm.png'), '‖∇_A‖ by term',
        [('total', metric('alpha_grad_norm')), ('explainer', metric('alpha_grad_norm_explainer')),
         ('audience', metric('alpha_grad_norm_audience'))], '‖∇_A‖', log=True)
  _plot(groups, os.path.join(out, 'plots', f'{op}_share.png'), f'share of {op} edges',
        [(op, lambda entry: op_share(entry['genotype'], op))], 'share of the cell\'s edges')
  return {'groups': rows, 'unfinished': unfinished}
