"""Search spaces (`config.space`) and base methods (`explainer.base`): the protocol and the registry.

A **search space** says what a cell is: its nodes and edges, its operations, the discrete cell
derived from A, how A and the cell are written and drawn. Each space is one module of this
package, found through `REGISTRY`:

  darts  DARTS's cell space (`spaces/darts.py`): α of [14, 8] per cell type, genotypes with two
         kept edges per node, a CIFAR evaluation network's parameter count.
  nb201  NAS-Bench-201 (`spaces/nb201.py`): one α of [6, 5] shared by every cell, one operation
         per edge (`none` included), NB201's arch string; results are looked up in a benchmark
         table (`config.benchmark.table`).

A **base method** (`explainer.base`, one of `BASES`; every space honours each) says how a
supernet edge mixes its operations and how edges are weighted:

  darts     the softmax(α)-weighted sum of every operation over all channels (Liu et al., 2019).
  pc_darts  PC-DARTS (Xu et al., 2020): the sum runs on the first C/K channels
            (`explainer.partial_channels` K), the rest bypass it, the parts are channel-shuffled
            in K groups; with `explainer.edge_normalization`, A also holds β, one per edge, and
            each edge's output is weighted by the softmax of β over its node's incoming edges.

The protocol: a space module defines

  check_config(config)               its own config checks (one-line `SpaceError`s), before
                                     anything is built;
  build(config, num_classes, bn_groups) -> Space
                                     the space with its supernet sized by `config.explainer`,
                                     for the base `explainer.base`;
  HAS_BENCHMARK                      whether a benchmark table of its cells can be looked up;

and its `Space` (a subclass of the dataclass below) implements

  init_arch(key, scale) -> A         A as a dict of arrays (α, and β where the base has them);
  derive(A) -> cell                  the discrete cell (it has `to_json_dict()`);
  describe(cell) -> str              one line for the progress output;
  chosen(cell)                       (row, column) of the cell's choices, per α, for the heat maps;
  edge_weights(A)                    per α its edges' normalised β (None without β);
  smallest_side()                    the side images must be a multiple of (each reduction
                                     halves them and needs them even there);
  draw_cell(cell, A, plots, prefix)  the cell drawing(s) under `plots/`;
  summary(cell, num_classes)         what `summary.json` says of the cell beyond its JSON form.

The rest (the supernet's apply function, `genotype.json` and `alphas.json`, the α heat maps) is
common and lives in `Space`. A is any pytree to the hypergradient code, which never learns which
space or base it differentiates. A new space is one new module and one `REGISTRY` line.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import math
import os
from typing import Any, Mapping

import jax
import numpy as np

from lease_jax import errors, search_space, visualize, writers

REGISTRY = {'darts': 'lease_jax.spaces.darts', 'nb201': 'lease_jax.spaces.nb201'}
SPACES = tuple(REGISTRY)
BASES = ('darts', 'pc_darts')

SpaceError = errors.SpaceError  # by its old name


@dataclasses.dataclass(frozen=True)
class Space:
  """One search space with its supernet (common parts; a space module subclasses it).

  Attributes:
    name: the space's `REGISTRY` name.
    model: the supernet module (Flax), `apply({'params': E}, A, x)`.
    base: the base method (`BASES`).
    arch_names: the keys of A, in file and display order (α's, then β's).
    alpha_names: the α matrices among them.
    ops: the operations (α's columns).
    row_labels: α's rows (edges).
  """

  name: str
  model: Any
  base: str
  arch_names: tuple[str, ...]
  alpha_names: tuple[str, ...]
  ops: tuple[str, ...]
  row_labels: tuple[str, ...]

  def apply_fn(self):
    """`apply(E, A, x) -> logits`, the explainer of the hypergradient code."""
    model = self.model
    return lambda params, alphas, x: model.apply({'params': params}, alphas, x)

  def host_arch(self, arch: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A on the host, as numpy arrays."""
    return {k: np.asarray(v) for k, v in jax.device_get(dict(arch)).items()}

  def save(self, workdir: str, arch: Mapping[str, Any], cell) -> None:
    """`genotype.json` (the cell) and `alphas.json` (A) in the workdir."""
    writers.write_json_atomic(os.path.join(workdir, 'genotype.json'), cell.to_json_dict())
    search_space.save_arch(os.path.join(workdir, 'alphas.json'), jax.device_get(dict(arch)),
                           self.arch_names)

  def draw(self, arch: Mapping[str, Any], cell, plots: str, prefix: str, title: str) -> None:
    """`{prefix}alphas.png` and the cell drawing(s) under `plots/` (an epoch's, `prefix` set: PNG
    only; the final one also as SVG and Graphviz source)."""
    arch = self.host_arch(arch)
    visualize.draw_alphas({k: arch[k] for k in self.alpha_names},
                          os.path.join(plots, f'{prefix}alphas.png'), title,
                          row_labels=self.row_labels, ops=self.ops, chosen=self.chosen(cell),
                          edge_weights=self.edge_weights(arch))
    self.draw_cell(cell, arch, plots, prefix)

  def edge_weights(self, arch: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """Per α, its edges' normalised β (None: the base has no β)."""
    return None

  def check_image_shape(self, shape: tuple[int, ...]) -> None:
    """Refuses, before anything is compiled, images whose sides the supernet's reductions cannot
    halve (a `DataError` naming the size and the accepted sides)."""
    side = self.smallest_side()
    height, width = shape[:2]
    if height % side or width % side:
      raise errors.DataError(
          f'images of {height}x{width}: the {self.name} supernet halves their sides at each of '
          f'its {side.bit_length() - 1} reductions, which needs sides divisible by {side} '
          f'(e.g. {side}x{side}, {4 * side}x{4 * side}); resize the images or change '
          f'explainer.layers')


def space_module(name: str):
  """The module of a registered space; a `SpaceError` names the accepted ones."""
  if name not in REGISTRY:
    raise SpaceError(f'space {name!r}; accepted: {", ".join(SPACES)}')
  return importlib.import_module(REGISTRY[name])


def check_config(config) -> None:
  """The space and base settings of a search config (one line naming a bad field)."""
  module = space_module(config.get('space', 'darts'))
  ex = config.explainer
  base = ex.get('base', 'darts')
  if base not in BASES:
    raise SpaceError(f'explainer.base {base!r}; accepted: {", ".join(BASES)}')
  k = ex.get('partial_channels', 4)
  if base == 'pc_darts':
    if not isinstance(k, int) or k < 1:
      raise SpaceError(f'explainer.partial_channels = {k}; must be an integer >= 1')
    if ex.channels % k:
      raise SpaceError(f'explainer.partial_channels = {k} does not divide explainer.channels = '
                       f'{ex.channels}: PC-DARTS runs the operations on C/K channels')
  module.check_config(config)


def make_space(config, num_classes: int, bn_groups: int = 1) -> Space:
  """The space `config.space` names, with its supernet sized by `config.explainer`."""
  return space_module(config.get('space', 'darts')).build(config, num_classes, bn_groups)


def base_settings(config) -> tuple[str, int, bool]:
  """(base, K, edge normalisation) of `config.explainer`."""
  ex = config.explainer
  return (ex.get('base', 'darts'), int(ex.get('partial_channels', 4)),
          bool(ex.get('edge_normalization', True)))


# ---------------------------------------------------------------------------------------------
# Benchmark tables (NAS-Bench-201 look-ups).


def read_benchmark_table(path: str) -> dict[str, dict[str, float]]:
  """A CSV with a column `arch` (NB201 strings) and numeric columns: `{arch: {column: value}}`.

  Every problem is a `SpaceError` naming the file, the row and what is accepted: a missing file,
  no `arch` column, no numeric column, a malformed or repeated arch string, a non-numeric value.
  """
  path = os.path.expanduser(path)  # a `~` the shell did not expand (a quoted flag)
  if not os.path.isfile(path):
    raise SpaceError(f'benchmark.table {path!r}: no such file')
  try:
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name; CRLF
    # line ends are the csv module's own.
    with open(path, newline='', encoding='utf-8-sig') as f:
      rows = list(csv.DictReader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise SpaceError(f'benchmark.table {path!r}: not a readable CSV ({e})') from None
  if not rows or 'arch' not in rows[0]:
    raise SpaceError(f'benchmark.table {path!r}: needs a header with a column "arch" (NB201 '
                     f'arch strings) and at least one data row')
  # An empty header cell (a spreadsheet's trailing comma) names no column.
  columns = [c for c in rows[0] if c != 'arch' and c is not None and c.strip()]
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
  name = config.get('space', 'darts')
  if not space_module(name).HAS_BENCHMARK:
    with_table = [s for s in SPACES if space_module(s).HAS_BENCHMARK]
    raise SpaceError(f'benchmark.table is for space {" or ".join(map(repr, with_table))}; this '
                     f'config searches space {name!r}')
  return read_benchmark_table(path)


def look_up(table: Mapping[str, Mapping[str, float]] | None, arch) -> dict[str, float] | None:
  """The table's values of a cell; {} when the table lacks it; None without a table."""
  if table is None:
    return None
  return dict(table.get(arch.to_string(), {}))


def missing_note(arch, benchmark: Mapping[str, float] | None) -> str | None:
  """What to say when a table lacks the cell (None when it has it, or without a table)."""
  if benchmark is None or benchmark:
    return None
  return f'benchmark.table has no row for the cell {arch.to_string()}'
