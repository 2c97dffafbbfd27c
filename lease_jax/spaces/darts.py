"""The DARTS search space (Liu et al., ICLR 2019): the `darts` entry of `spaces.REGISTRY`.

A cell has 4 intermediate nodes; node i takes the two cell inputs and every earlier node, 14
edges in all, each one of the 8 `search_space.PRIMITIVES`. A = {'alphas_normal', 'alphas_reduce'}
([14, 8] each, one per cell type); with the `pc_darts` base and edge normalisation also
{'betas_normal', 'betas_reduce'} ([14] each). The discrete cell is a DARTS `Genotype`: per node
the two strongest incoming edges, each with its best non-`none` operation (DARTS's
`Network.genotype`; PC-DARTS's with β, `search_space.derive_cell`). The supernet is
`models.explainer.Supernet` (DARTS's `model_search.Network`, PC-DARTS's with the `pc_darts` base).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

from lease_jax import search_space, spaces, visualize

HAS_BENCHMARK = False


@dataclasses.dataclass(frozen=True)
class DartsSpace(spaces.Space):
  """The DARTS space; `steps` intermediate nodes, the last `multiplier` concatenated."""

  steps: int = 4
  multiplier: int = 4

  def init_arch(self, key: jax.Array, scale: float) -> dict[str, jax.Array]:
    """α = scale · N(0, 1) per cell type (DARTS), and β likewise where the base has them."""
    from lease_jax.models import explainer as explainer_lib
    arch = explainer_lib.init_alphas(key, self.steps, scale)
    if 'betas_normal' in self.arch_names:
      arch.update(explainer_lib.init_betas(jax.random.fold_in(key, 1), self.steps, scale))
    return arch

  def derive(self, arch: Mapping[str, Any]) -> search_space.Genotype:
    arch = self.host_arch(arch)
    return search_space.derive_genotype(
        arch['alphas_normal'], arch['alphas_reduce'], self.steps, self.multiplier,
        arch.get('betas_normal'), arch.get('betas_reduce'))

  def describe(self, cell: search_space.Genotype) -> str:
    edges = lambda pairs: ' '.join(f'{op}<-{i}' for op, i in pairs)
    return f'normal [{edges(cell.normal)}] reduce [{edges(cell.reduce)}]'

  def chosen(self, cell: search_space.Genotype) -> dict[str, list[tuple[int, int]]]:
    return {'alphas_normal': visualize.darts_choices(cell.normal, self.steps),
            'alphas_reduce': visualize.darts_choices(cell.reduce, self.steps)}

  def edge_weights(self, arch: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    if 'betas_normal' not in self.arch_names:
      return None
    arch = self.host_arch(arch)
    return {f'alphas_{kind}': search_space.node_softmax(arch[f'betas_{kind}'],
                                                           search_space.darts_in_degrees(self.steps))
            for kind in ('normal', 'reduce')}

  def draw_cell(self, cell: search_space.Genotype, arch: Mapping[str, Any], plots: str,
                prefix: str) -> None:
    weights = self.edge_weights(arch)
    kept = None
    if weights is not None:  # each kept edge's β weight, beside its operation
      rows = {pair: r for r, pair in enumerate(search_space.edge_endpoints(self.steps))}
      kept = {kind: [float(weights[f'alphas_{kind}'][rows[(index, k // 2)]])
                     for k, (_, index) in enumerate(getattr(cell, kind))]
              for kind in ('normal', 'reduce')}
    visualize.draw_genotype(cell, plots, prefix, ('png',) if prefix else ('png', 'svg', 'dot'),
                            edge_weights=kept)

  def smallest_side(self) -> int:
    """2^r for the r distinct reduction cells (FactorizedReduce needs even sides)."""
    from lease_jax.models import explainer as explainer_lib
    return 2 ** len(set(explainer_lib.reduction_layers(self.model.layers)))

  def summary(self, cell: search_space.Genotype, num_classes: int) -> dict[str, Any]:
    from lease_jax.models import eval_network
    total, no_aux = eval_network.count_genotype_params(cell, 'cifar', 36, 20, num_classes)
    return {'cifar_eval_network': {'params': total, 'params_no_aux': no_aux}}


def check_config(config) -> None:
  """Nothing beyond the common checks: every kernel choice, 'smooth' included, works here."""
  del config


def build(config, num_classes: int, bn_groups: int = 1) -> DartsSpace:
  from lease_jax.models import explainer as explainer_lib
  ex = config.explainer
  base, k, edge_normalization = spaces.base_settings(config)
  model = explainer_lib.Supernet(
      num_classes=num_classes, channels=ex.channels, layers=ex.layers, steps=ex.steps,
      multiplier=ex.multiplier, stem_multiplier=ex.stem_multiplier, bn_groups=bn_groups,
      remat=ex.remat, impl=ex.impl, base=base, partial_channels=k,
      edge_normalization=edge_normalization)
  return DartsSpace('darts', model, base, model.arch_keys, explainer_lib.ALPHA_KEYS,
                    search_space.PRIMITIVES, tuple(visualize.darts_edge_labels(ex.steps)),
                    ex.steps, ex.multiplier)
