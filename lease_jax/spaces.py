"""The search spaces a search can run on (`config.space`): what differs between them, in one place.

  darts  DARTS's cell space (`search_space`, `models.explainer`): two α of [14, 8], genotypes
         with two kept edges per node, a CIFAR evaluation network's parameter count.
  nb201  NAS-Bench-201 (`search_space.Nb201Arch`, `models.nb201`): one α of [6, 5] shared by
         every cell, one operation per edge (`none` included), NB201's arch string; results are
         looked up in a benchmark table (`config.benchmark.table`, `benchmark_table`).

Each space builds its supernet (the explainer), initialises A, derives the discrete cell from A,
writes it (`genotype.json`, `alphas.json`) and draws it. The search loop and the hypergradient
are the same for both.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np

from lease_jax import search_space, visualize, writers

SPACES = ('darts', 'nb201')


class SpaceError(ValueError):
  """A search-space setting or benchmark table that cannot work (one line)."""


@dataclasses.dataclass(frozen=True)
class Space:
  """One search space.

  Attributes:
    name: 'darts' | 'nb201'.
    model: the supernet module (Flax), `apply({'params': E}, A, x)`.
    init_alphas: `(key, scale) -> A`.
    alpha_names: the keys of A, in display order.
    ops: the operations (α's columns).
    row_labels: α's rows (edges).
  """

  name: str
  model: Any
  init_alphas: Callable[[jax.Array, float], dict]
  alpha_names: tuple[str, ...]
  ops: tuple[str, ...]
  row_labels: tuple[str, ...]
  steps: int = 4
  multiplier: int = 4

  def apply_fn(self):
    """`apply(E, A, x) -> logits`, the explainer of the hypergradient code."""
    model = self.model
    return lambda params, alphas, x: model.apply({'params': params}, alphas, x)

  def derive(self, alphas: Mapping[str, np.ndarray]):
    """The discrete cell of A: a DARTS `Genotype` or an `Nb201Arch`."""
    alphas = {k: np.asarray(v) for k, v in jax.device_get(dict(alphas)).items()}
    if self.name == 'nb201':
      return search_space.derive_nb201(alphas['alphas'])
    return search_space.derive_genotype(alphas['alphas_normal'], alphas['alphas_reduce'],
                                        self.steps, self.multiplier)

  def describe(self, arch) -> str:
    """One line for the progress output."""
    if self.name == 'nb201':
      return arch.to_string()
    cell = lambda edges: ' '.join(f'{op}<-{i}' for op, i in edges)
    return f'normal [{cell(arch.normal)}] reduce [{cell(arch.reduce)}]'

  def save(self, workdir: str, alphas: Mapping[str, Any], arch) -> None:
    """`genotype.json` (the cell) and `alphas.json` (A) in the workdir."""
    alphas = jax.device_get(dict(alphas))
    if self.name == 'nb201':
      writers.write_json_atomic(os.path.join(workdir, 'genotype.json'), arch.to_json_dict())
      writers.write_json_atomic(os.path.join(workdir, 'alphas.json'),
                                {'alphas': np.asarray(alphas['alphas'], np.float64).tolist()})
      return
    search_space.save_genotype(os.path.join(workdir, 'genotype.json'), arch)
    search_space.save_alphas(os.path.join(workdir, 'alphas.json'), alphas['alphas_normal'],
                             alphas['alphas_reduce'])

  def chosen(self, arch) -> dict[str, list[tuple[int, int]]]:
    """(α row, operation column) of every choice of the cell, per α (for the heat maps)."""
    if self.name == 'nb201':
      return {'alphas': [(r, self.ops.index(op)) for r, op in enumerate(arch.ops)]}
    return {'alphas_normal': visualize.darts_choices(arch.normal, self.steps),
            'alphas_reduce': visualize.darts_choices(arch.reduce, self.steps)}

  def draw(self, alphas: Mapping[str, Any], arch, plots: str, prefix: str, title: str) -> None:
    """`{prefix}alphas.png` and the cell drawing(s) under `plots/` (an epoch's, `prefix` set: PNG
    only; the final one also as SVG and Graphviz source)."""
    alphas = jax.device_get(dict(alphas))
    visualize.draw_alphas({k: alphas[k] for k in self.alpha_names},
                          os.path.join(plots, f'{prefix}alphas.png'), title,
                          row_labels=self.row_labels, ops=self.ops, chosen=self.chosen(arch))
    if self.name == 'nb201':
      visualize.draw_nb201_cell(arch, os.path.join(plots, f'{prefix}cell.png'))
    else:
      visualize.draw_genotype(arch, plots, prefix, ('png',) if prefix else ('png', 'svg', 'dot'))

  def summary(self, arch, num_classes: int) -> dict[str, Any]:
    """What `summary.json` says of the cell beyond its JSON form."""
    if self.name == 'nb201':
      return {'arch': arch.to_string()}
    from lease_jax.models import eval_network
    total, no_aux = eval_network.count_genotype_params(arch, 'cifar', 36, 20, num_classes)
    return {'cifar_eval_network': {'params': total, 'params_no_aux': no_aux}}


def make_space(config, num_classes: int, bn_groups: int = 1) -> Space:
  """The space `config.space` names, with its supernet sized by `config.explainer`."""
  name = config.get('space', 'darts')
  ex = config.explainer
  if name == 'nb201':
    from lease_jax.models import nb201
    model = nb201.Supernet(num_classes=num_classes, channels=ex.channels, cells=ex.layers,
                           bn_groups=bn_groups, impl=ex.impl)
    labels = tuple(f'{j}->{i}' for i, j in search_space.NB201_EDGES)
    return Space('nb201', model, lambda key, scale: nb201.init_alphas(key, scale),
                 (nb201.ALPHA_KEY,), search_space.NB201_OPS, labels)
  if name != 'darts':
    raise SpaceError(f'space {name!r}; accepted: {", ".join(SPACES)}')
  from lease_jax.models import explainer as explainer_lib
  model = explainer_lib.Supernet(
      num_classes=num_classes, channels=ex.channels, layers=ex.layers, steps=ex.steps,
      multiplier=ex.multiplier, stem_multiplier=ex.stem_multiplier, bn_groups=bn_groups,
      remat=ex.remat, impl=ex.impl)
  return Space('darts', model,
               lambda key, scale: explainer_lib.init_alphas(key, ex.steps, scale),
               explainer_lib.ALPHA_KEYS, search_space.PRIMITIVES,
               tuple(visualize.darts_edge_labels(ex.steps)), ex.steps, ex.multiplier)


# ---------------------------------------------------------------------------------------------
# Benchmark tables (NAS-Bench-201 look-ups).


def read_benchmark_table(path: str) -> dict[str, dict[str, float]]:
  """A CSV with a column `arch` (NB201 strings) and numeric columns: `{arch: {column: value}}`.

  Every problem is a `SpaceError` naming the file, the row and what is accepted: a missing file,
  no `arch` column, no numeric column, a malformed or repeated arch string, a non-numeric value.
  """
  if not os.path.isfile(path):
    raise SpaceError(f'benchmark.table {path!r}: no such file')
  try:
    with open(path, newline='') as f:
      rows = list(csv.DictReader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise SpaceError(f'benchmark.table {path!r}: not a readable CSV ({e})') from None
  if not rows or 'arch' not in rows[0]:
    raise SpaceError(f'benchmark.table {path!r}: needs a header with a column "arch" (NB201 '
                     f'arch strings) and at least one data row')
  columns = [c for c in rows[0] if c != 'arch' and c is not None]
  if not columns:
    raise SpaceError(f'benchmark.table {path!r}: no value column beside "arch"')
  table = {}
  for line, row in enumerate(rows, start=2):
    try:
      arch = search_space.Nb201Arch.from_string(row['arch']).to_string()
    except search_space.GenotypeError as e:
      raise SpaceError(f'benchmark.table {path!r} line {line}: {e}') from None
    if arch in table:
      raise SpaceError(f'benchmark.table {path!r} line {line}: arch {arch} appears twice')
    values = {}
    for column in columns:
      try:
        values[column] = float(row[column])
      except (TypeError, ValueError):
        raise SpaceError(f'benchmark.table {path!r} line {line}: column {column!r} holds '
                         f'{row[column]!r}, not a number') from None
      if not math.isfinite(values[column]):
        raise SpaceError(f'benchmark.table {path!r} line {line}: column {column!r} is not '
                         f'finite')
    table[arch] = values
  return table


def benchmark_table(config) -> dict[str, dict[str, float]] | None:
  """The table `config.benchmark.table` names (None when unset), checked against the space."""
  path = config.get('benchmark', {}).get('table', '') if 'benchmark' in config else ''
  if not path:
    return None
  if config.get('space', 'darts') != 'nb201':
    raise SpaceError(f'benchmark.table is for space "nb201"; this config searches space '
                     f'{config.get("space", "darts")!r}')
  return read_benchmark_table(path)


def look_up(table: Mapping[str, Mapping[str, float]] | None, arch) -> dict[str, float] | None:
  """The table's values of a cell; {} when the table lacks it; None without a table."""
  if table is None:
    return None
  return dict(table.get(arch.to_string(), {}))
