"""NAS-Bench-201's networks: the search supernet (an explainer) and the discrete network of a cell.

Semantics, parameter shapes and counts follow the reference code (AutoDL-Projects,
`TinyNetworkDarts` for the search, `TinyNetwork` + `InferCell` for a cell):

  stem        3x3 conv (no bias) -> BN (affine)
  stage k     N cells at C · 2^k channels (k = 0, 1, 2), stage k > 0 opened by a stride-2 ResNet
              basic block: ReLU-conv3x3(stride 2)-BN, ReLU-conv3x3-BN, plus a shortcut
              avgpool 2x2 -> 1x1 conv (no bias); affine BN
  head        BN (affine) -> ReLU -> global average pool -> linear

A cell: node 0 is its input; node i = Σ_{j<i} o_{j→i}(node j); the output is node 3. The
operations (`search_space.NB201_OPS`): `none` (zeros), `skip_connect` (identity),
`nor_conv_{1x1,3x3}` (ReLU -> conv -> BN) and `avg_pool_3x3` (stride 1, padding 1,
`count_include_pad=False`, no BN). In the search network every edge is a softmax(α)-weighted sum
of all five (one α [6, 5] shared by every cell), its BN has no affine parameters and its convs
then carry a bias (the reference's `bias=not affine`); BN uses batch statistics, so the supernet
is a pure function that can be differentiated to any order. In the discrete network the cell's BN
is affine with running statistics and the convs have no bias.

Base methods (`base`): 'darts' (above) and 'pc_darts', the partial channel cell of DrNAS
(`201-space/search_cells.py`, `NAS201SearchCell_PartialChannel`): each edge's operations run at
C/K channels on the first C/K channels of its input, the rest bypass them, and the two parts are
channel-shuffled in K groups (`ops.partial_channel_edge`); its convs have no bias (DrNAS's
`ReLUConvBN`; before a BN without affine parameters a bias changes nothing but the count); with `edge_normalization` (optional
here; DrNAS has none) A also holds `betas` [6], each edge weighted by the softmax of β over its
node's incoming edges (node i has i of them), as PC-DARTS does in its own space.

The cells are unrolled: under `nn.scan` (one compiled cell body per stage) a gradient step of
the C=8, N=2 supernet at batch 64 on 32x32 images took 8.4 s on 2 CPU cores against 0.6 s
unrolled (both measured with another job on the cores) — XLA fuses each cell's backward into the
scan's dynamic-update-slices, the pathology of DESIGN.md §6 — and N ≤ 5 keeps the unrolled
program small.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lease_jax import kernels, ops
from lease_jax.search_space import NB201_EDGES, NB201_NODES, NB201_OPS, Nb201Arch

Array = jax.Array
ALPHA_KEY = 'alphas'
BETA_KEY = 'betas'


def init_alphas(key: Array, scale: float = 1e-3) -> dict[str, Array]:
  """A = {'alphas': 1e-3 · N(0, 1) of shape [6, 5]} (the reference's `arch_parameters`)."""
  return {ALPHA_KEY: scale * jax.random.normal(key, (len(NB201_EDGES), len(NB201_OPS)))}


def init_betas(key: Array, scale: float = 1e-3) -> dict[str, Array]:
  """β = {'betas': 1e-3 · N(0, 1) of shape [6]} (PC-DARTS's initialisation)."""
  return {BETA_KEY: scale * jax.random.normal(key, (len(NB201_EDGES),))}


def node_softmax(betas: Array) -> Array:
  """The softmax of β over each node's incoming edges (the rows of `NB201_EDGES` are grouped by
  node: node i's i edges are consecutive)."""
  parts, start = [], 0
  for node in range(1, NB201_NODES):
    parts.append(jax.nn.softmax(betas[start:start + node]))
    start += node
  return jnp.concatenate(parts)


class NorConv(nn.Module):
  """ReLU -> k x k conv (stride, padding k // 2) -> BN; the conv has a bias iff BN is not affine."""

  features: int
  kernel: int
  norm: ops.ModuleDef
  stride: int = 1
  bias: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c_in = x.shape[-1]
    y = ops.Conv(self.features, self.kernel, self.stride, self.kernel // 2)(nn.relu(x))
    if self.bias:
      y = y + self.param('bias', ops.torch_default_init(c_in * self.kernel ** 2),
                         (self.features,), jnp.float32).astype(y.dtype)
    return self.norm()(y)


def nb201_op(name: str, channels: int, norm: ops.ModuleDef, search: bool, impl: str,
             module_name: str | None = None, conv_bias: bool | None = None):
  """One NB201 operation (stride 1, channels in = out, as every cell edge is); its convs carry a
  bias in the search network (`conv_bias`, default `search`: AutoDL's `bias=not affine`; DrNAS's
  partial channel cell has none)."""
  if name == 'skip_connect':
    return ops.Identity(name=module_name)
  if name in ('nor_conv_1x1', 'nor_conv_3x3'):
    return NorConv(channels, 1 if name == 'nor_conv_1x1' else 3, norm,
                   bias=search if conv_bias is None else conv_bias, name=module_name)
  if name == 'avg_pool_3x3':
    return lambda x: kernels.avg_pool(x, 3, 1, 1, impl)
  raise ValueError(f'NB201 operation {name!r} has no module (none is skipped); accepted: '
                   f'{", ".join(NB201_OPS)}')


class SearchCell(nn.Module):
  """The supernet's cell: every edge a softmax(α)-weighted sum of the five operations."""

  channels: int
  norm: ops.ModuleDef
  impl: str = 'auto'
  partial_channels: int = 1

  @nn.compact
  def __call__(self, x: Array, weights: Array, edge_weights: Array | None = None) -> Array:
    k_parts = self.partial_channels
    nodes = [x]
    for i in range(1, NB201_NODES):
      total = None
      for j in range(i):
        edge = NB201_EDGES.index((i, j))

        def mix(h, i=i, j=j, edge=edge):
          out = None
          for k, name in enumerate(NB201_OPS):
            if name == 'none':  # w · 0: skipped, it still takes part in the softmax
              continue
            op = nb201_op(name, self.channels // k_parts, self.norm, True, self.impl,
                          None if name == 'avg_pool_3x3' else f'edge{i}{j}_{name}',
                          conv_bias=k_parts == 1)
            term = weights[edge, k].astype(h.dtype) * op(h)
            out = term if out is None else out + term
          return out

        if k_parts == 1:
          term = mix(nodes[j])
        else:
          term = ops.partial_channel_edge(nodes[j], mix, k_parts, 1)
        if edge_weights is not None:
          term = edge_weights[edge].astype(term.dtype) * term
        total = term if total is None else total + term
      nodes.append(total)
    return nodes[-1]


class InferCell(nn.Module):
  """A discrete cell: each edge its one operation (`none` edges contribute nothing)."""

  arch: Nb201Arch
  channels: int
  norm: ops.ModuleDef
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    nodes = [x]
    for i in range(1, NB201_NODES):
      total = jnp.zeros_like(x)
      for j in range(i):
        name = self.arch.ops[NB201_EDGES.index((i, j))]
        if name != 'none':
          op = nb201_op(name, self.channels, self.norm, False, self.impl,
                        None if name == 'avg_pool_3x3' else f'edge{i}{j}_{name}')
          total = total + op(nodes[j])
      nodes.append(total)
    return nodes[-1]


class ResNetBlock(nn.Module):
  """The stride-2 basic block between stages (affine BN, convs without bias)."""

  features: int
  norm: ops.ModuleDef

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = NorConv(self.features, 3, self.norm, stride=2, name='conv_a')(x)
    y = NorConv(self.features, 3, self.norm, name='conv_b')(y)
    shortcut = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID') / 4
    shortcut = ops.Conv(self.features, 1, 1, 0, name='shortcut')(shortcut)
    return shortcut + y


def skeleton(x: Array, channels: int, num_classes: int, norm: ops.ModuleDef, stage_cells):
  """NB201's macro skeleton around `stage_cells(stage, C_stage, x) -> x` (a stage's N cells);
  called inside a parent's `nn.compact` method, whose submodules it creates."""
  x = norm()(ops.Conv(channels, 3, 1, 1, name='stem')(x))
  for stage in range(3):
    c = channels * 2 ** stage
    if stage:
      x = ResNetBlock(c, norm, name=f'reduce{stage}')(x)
    x = stage_cells(stage, c, x)
  x = nn.relu(norm()(x))
  return ops.Dense(num_classes, name='classifier')(jnp.mean(x, axis=(1, 2)))


class Supernet(nn.Module):
  """NB201's search network (`TinyNetworkDarts`): `logits = apply(E, A, x)`, A = {'alphas'}.

  Attributes:
    num_classes: classifier outputs.
    channels: C, the first stage's width (16 in the benchmark).
    cells: N, cells per stage (5 in the benchmark).
    bn_groups: BatchNorm statistics over this many equal slices of the batch.
    impl: pooling kernels ('auto' | 'slices' | 'xla', see `kernels`).
    base: 'darts' | 'pc_darts' (the module docstring).
    partial_channels: K, the channel proportion 1/K of 'pc_darts'.
    edge_normalization: 'pc_darts' with β (A holds `BETA_KEY`).
  """

  num_classes: int = 10
  channels: int = 16
  cells: int = 5
  bn_groups: int = 1
  impl: str = 'auto'
  base: str = 'darts'
  partial_channels: int = 4
  edge_normalization: bool = False

  @property
  def arch_keys(self) -> tuple[str, ...]:
    """The keys of A this supernet takes."""
    uses_betas = self.base == 'pc_darts' and self.edge_normalization
    return (ALPHA_KEY,) + ((BETA_KEY,) if uses_betas else ())

  @nn.compact
  def __call__(self, alphas: Mapping[str, Array], x: Array) -> Array:
    affine = lambda: ops.BatchNorm(affine=True, groups=self.bn_groups)
    weights = jax.nn.softmax(alphas[ALPHA_KEY], axis=-1)
    edge_weights = node_softmax(alphas[BETA_KEY]) if BETA_KEY in self.arch_keys else None
    k_parts = self.partial_channels if self.base == 'pc_darts' else 1

    def stage_cells(stage, c, x):
      for k in range(self.cells):
        x = SearchCell(c, ops.search_norm(self.bn_groups), self.impl, k_parts,
                       name=f'stage{stage}_cell{k}')(x, weights, edge_weights)
      return x

    return skeleton(x, self.channels, self.num_classes, affine, stage_cells)


class Network(nn.Module):
  """The discrete network of one NB201 cell (`TinyNetwork`): `apply(variables, x, train)`.

  BatchNorm is affine with running statistics (PyTorch's defaults); `train` picks batch or
  running statistics.
  """

  arch: Nb201Arch
  num_classes: int = 10
  channels: int = 16
  cells: int = 5
  bn_groups: int = 1
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    norm = ops.eval_norm(train, self.bn_groups)

    def stage_cells(stage, c, x):
      for k in range(self.cells):
        x = InferCell(self.arch, c, norm, self.impl, name=f'stage{stage}_cell{k}')(x)
      return x

    return skeleton(x, self.channels, self.num_classes, norm, stage_cells)


def make_explainer(model: Supernet):
  """Pure functions of the NB201 explainer: `init(key, x) -> E`, `apply(E, A, x) -> logits`."""

  def init(key: Array, x: Array):
    arch = {**init_alphas(jax.random.PRNGKey(0)), **init_betas(jax.random.PRNGKey(1))}
    return model.init(key, {k: arch[k] for k in model.arch_keys}, x)['params']

  def apply(params, alphas, x):
    return model.apply({'params': params}, alphas, x)

  return init, apply


def count_params(tree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))
