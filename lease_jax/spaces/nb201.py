"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020): the `nb201` entry of
`spaces.REGISTRY`.

One cell of 4 nodes and 6 edges, each one of the 5 `search_space.NB201_OPS`, stacked 3 × N with
ResNet blocks between the stages. A = {'alphas'} ([6, 5], shared by every cell); with the
`pc_darts` base and edge normalisation also {'betas'} ([6]). The discrete cell is an
`search_space.Nb201Arch`: per edge the strongest operation, `none` included (β scales a whole edge,
so it does not change the choice). Its accuracies are published: a benchmark table
(`config.benchmark.table`) can be looked up. The supernet is `models.nb201.Supernet`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import jax
import numpy as np

from lease_jax import errors, search_space, spaces, visualize

HAS_BENCHMARK = True


@dataclasses.dataclass(frozen=True)
class Nb201Space(spaces.Space):
  """The NB201 space."""

  def init_arch(self, key: jax.Array, scale: float) -> dict[str, jax.Array]:
    """α = scale · N(0, 1) (the reference's `arch_parameters`), and β where the base has it."""
    from lease_jax.models import nb201
    arch = nb201.init_alphas(key, scale)
    if nb201.BETA_KEY in self.arch_names:
      arch.update(nb201.init_betas(jax.random.fold_in(key, 1), scale))
    return arch

  def derive(self, arch: Mapping[str, Any]) -> search_space.Nb201Arch:
    return search_space.derive_nb201(self.host_arch(arch)['alphas'])

  def describe(self, cell: search_space.Nb201Arch) -> str:
    return cell.to_string()

  def chosen(self, cell: search_space.Nb201Arch) -> dict[str, list[tuple[int, int]]]:
    return {'alphas': [(r, self.ops.index(op)) for r, op in enumerate(cell.ops)]}

  def edge_weights(self, arch: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    from lease_jax.models import nb201
    if nb201.BETA_KEY not in self.arch_names:
      return None
    degrees = range(1, search_space.NB201_NODES)  # node i's i incoming edges
    return {'alphas': search_space.node_softmax(self.host_arch(arch)[nb201.BETA_KEY], degrees)}

  def draw_cell(self, cell: search_space.Nb201Arch, arch: Mapping[str, Any], plots: str,
                prefix: str) -> None:
    weights = self.edge_weights(arch)
    visualize.draw_nb201_cell(cell, os.path.join(plots, f'{prefix}cell.png'),
                              edge_weights=None if weights is None else weights['alphas'])

  def smallest_side(self) -> int:
    """4: two stride-2 ResNet blocks, whose 2x2 average-pool shortcut needs even sides."""
    return 4

  def summary(self, cell: search_space.Nb201Arch, num_classes: int) -> dict[str, Any]:
    del num_classes
    return {'arch': cell.to_string()}


def check_config(config) -> None:
  """The study kernels ('smooth') exist for the DARTS space only."""
  impl = config.explainer.get('impl', 'auto')
  if impl == 'smooth':
    raise errors.SpaceError("explainer.impl 'smooth' is a study option of the DARTS space; "
                            "space 'nb201' accepts 'auto', 'slices', 'xla'")


def build(config, num_classes: int, bn_groups: int = 1) -> Nb201Space:
  from lease_jax.models import nb201
  ex = config.explainer
  base, k, edge_normalization = spaces.base_settings(config)
  model = nb201.Supernet(num_classes=num_classes, channels=ex.channels, cells=ex.layers,
                         bn_groups=bn_groups, impl=ex.impl, base=base, partial_channels=k,
                         edge_normalization=edge_normalization)
  labels = tuple(f'{j}->{i}' for i, j in search_space.NB201_EDGES)
  return Nb201Space('nb201', model, base, model.arch_keys, (nb201.ALPHA_KEY,),
                    search_space.NB201_OPS, labels)
