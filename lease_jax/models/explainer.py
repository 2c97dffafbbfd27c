"""The explainer: DARTS's search supernet with the architecture α as an input.

`logits = Supernet(...).apply({'params': E}, A, x)` where `A = {'alphas_normal': [14, 8],
'alphas_reduce': [14, 8]}` (raw logits; the supernet applies the softmax). Semantics, parameter
shapes and parameter count are those of DARTS's `cnn/model_search.Network` (1,930,618 weights
for C=16, 8 layers, 10 classes); BatchNorm uses batch statistics, so the function is pure and can
be differentiated to any order.

Two base methods (`base`): 'darts' (above) and 'pc_darts', PC-DARTS's `model_search.Network`
(Xu et al., ICLR 2020): each mixed operation runs on the first C/K channels of its input, the
rest bypass it (`ops.partial_channel_edge`), and with `edge_normalization` A also holds
`betas_normal`, `betas_reduce` [14]: each edge's output is weighted by the softmax of β over its
node's incoming edges (`node_softmax`).

Compile time is the first constraint on CPU (DESIGN.md §6): a cell written out edge by edge gives
XLA 14 copies of the MixedOp graph per cell, 112 in the network, and every derivative multiplies
that (unrolled, the network's forward+backward did not finish compiling in 15 minutes). Here the
edges of a cell run under `lax.scan` (Flax `nn.scan`, parameters stacked on a leading axis), so XLA
sees two MixedOp bodies per cell:
  * the input edges, from s0 and s1 (the strided ones in a reduction cell), which depend on no
    node: one scan over the 2·steps of them, reading their input by index;
  * the inner edges, node j -> node i, in DARTS's order: a scan whose carry holds the nodes, each
    edge adding its output into its destination node, which is complete before any edge reads it.
Each edge is rematerialised in the backward pass, and its input and output pass through
`kernels.boundary` so that XLA does not fuse a whole edge into the scan's dynamic-update-slice
(benchmarks/NOTES.md has the measurements, including a rejected vmap-over-edges layout). The
stacked parameters hold the same numbers as DARTS's per-edge modules (the tests check the count).
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lease_jax import kernels, ops
from lease_jax.search_space import NUM_OPS, PRIMITIVES, edge_endpoints, num_edges

Array = jax.Array
ALPHA_KEYS = ('alphas_normal', 'alphas_reduce')
BETA_KEYS = ('betas_normal', 'betas_reduce')


def reduction_layers(layers: int) -> tuple[int, int]:
  """Indices of the reduction cells: layers // 3 and 2 * layers // 3 (DARTS)."""
  return layers // 3, 2 * layers // 3


def init_alphas(key: Array, steps: int = 4, scale: float = 1e-3) -> dict[str, Array]:
  """A = 1e-3 · N(0, 1) for each cell type, [num_edges, 8] (DARTS's `_initialize_alphas`)."""
  keys = jax.random.split(key, 2)
  shape = (num_edges(steps), NUM_OPS)
  return {name: scale * jax.random.normal(k, shape) for name, k in zip(ALPHA_KEYS, keys)}


def init_betas(key: Array, steps: int = 4, scale: float = 1e-3) -> dict[str, Array]:
  """β = 1e-3 · N(0, 1) for each cell type, [num_edges] (PC-DARTS's `_initialize_alphas`)."""
  keys = jax.random.split(key, 2)
  return {name: scale * jax.random.normal(k, (num_edges(steps),))
          for name, k in zip(BETA_KEYS, keys)}


def node_softmax(betas: Array, steps: int = 4) -> Array:
  """PC-DARTS's edge normalisation: the softmax of β over each node's incoming edges (node i has
  i + 2 of them, consecutive rows in DARTS's order)."""
  parts, start = [], 0
  for node in range(steps):
    parts.append(jax.nn.softmax(betas[start:start + node + 2]))
    start += node + 2
  return jnp.concatenate(parts)


class MixedOp(nn.Module):
  """Eq. (1) of DARTS: `sum_k softmax(α)_k · op_k(x)` over the 8 primitives; with
  `partial_channels` K > 1, PC-DARTS's partial channel connection around it (the operations at
  C/K channels).

  `none` contributes `w · 0`, so it is skipped; it still takes part in the softmax.
  """

  channels: int
  stride: int
  norm: ops.ModuleDef
  impl: str = 'auto'
  partial_channels: int = 1

  @nn.compact
  def __call__(self, x: Array, weights: Array) -> Array:
    k_parts = self.partial_channels

    def mix(x):
      out = None
      for k, name in enumerate(PRIMITIVES):
        if name == 'none':
          continue
        op = ops.make_op(name, self.channels // k_parts, self.stride, self.norm, search=True,
                         module_name=name, impl=self.impl)
        term = weights[k].astype(x.dtype) * op(x)
        out = term if out is None else out + term
      return out

    if k_parts == 1:
      return mix(x)
    return ops.partial_channel_edge(x, mix, k_parts, self.stride, self.impl)


def _edge_weighted(y: Array, edge_weight: Array | None) -> Array:
  """An edge's output times its normalised β (PC-DARTS), or as it is without β."""
  return y if edge_weight is None else edge_weight.astype(y.dtype) * y


def edge_schedule(steps: int = 4):
  """Index tables for the two edge scans of a cell.

  Returns:
    input_rows: α rows of the input edges, ordered (s0 -> node 0, s1 -> node 0, s0 -> node 1, ...).
    input_src: their source (0 = s0, 1 = s1).
    inner_rows: α rows of the node-to-node edges, by destination then source.
    inner_src, inner_dst: their source and destination node indices (0-based).
  """
  input_rows, input_src, inner_rows, inner_src, inner_dst = [], [], [], [], []
  for row, (src, node) in enumerate(edge_endpoints(steps)):
    if src < 2:
      input_rows.append(row)
      input_src.append(src)
    else:
      inner_rows.append(row)
      inner_src.append(src - 2)
      inner_dst.append(node)
  as_array = lambda xs: np.asarray(xs, np.int32)
  return tuple(map(as_array, (input_rows, input_src, inner_rows, inner_src, inner_dst)))


class _InputEdge(nn.Module):
  """Scan body: one edge out of s0 or s1."""

  channels: int
  stride: int
  norm: ops.ModuleDef
  impl: str = 'auto'
  partial_channels: int = 1

  @nn.compact
  def __call__(self, carry, inputs: Array, src: Array, weights: Array, edge_weight):
    x = kernels.boundary(lax.dynamic_index_in_dim(inputs, src, keepdims=False))
    mixed = MixedOp(self.channels, self.stride, self.norm, self.impl, self.partial_channels,
                    name='mixed_op')
    return carry, kernels.boundary(_edge_weighted(mixed(x, weights), edge_weight))


class _InnerEdge(nn.Module):
  """Scan body: one node-to-node edge, accumulated into its destination node."""

  channels: int
  norm: ops.ModuleDef
  impl: str = 'auto'
  partial_channels: int = 1

  @nn.compact
  def __call__(self, nodes: Array, src: Array, dst: Array, weights: Array, edge_weight):
    x = kernels.boundary(lax.dynamic_index_in_dim(nodes, src, keepdims=False))
    mixed = MixedOp(self.channels, 1, self.norm, self.impl, self.partial_channels,
                    name='mixed_op')
    y = kernels.boundary(_edge_weighted(mixed(x, weights), edge_weight))
    updated = lax.dynamic_index_in_dim(nodes, dst, keepdims=False) + y
    return lax.dynamic_update_index_in_dim(nodes, updated, dst, 0), None


def _scan(body, length: int, in_axes, remat: bool):
  if remat:
    body = nn.remat(body, prevent_cse=False)
  return nn.scan(body, variable_axes={'params': 0}, split_rngs={'params': True},
                 in_axes=in_axes, length=length)


class SearchCell(nn.Module):
  """DARTS's search `Cell`: preprocessing, `steps` nodes of mixed edges, concat of the last
  `multiplier` nodes."""

  channels: int
  reduction: bool
  reduction_prev: bool
  norm: ops.ModuleDef
  steps: int = 4
  multiplier: int = 4
  remat: bool = True
  impl: str = 'auto'
  partial_channels: int = 1

  @nn.compact
  def __call__(self, s0: Array, s1: Array, weights: Array,
               edge_weights: Array | None = None) -> Array:
    c = self.channels
    if self.reduction_prev:
      s0 = ops.FactorizedReduce(c, self.norm, self.impl, name='preprocess0')(s0)
    else:
      s0 = ops.ReLUConvBN(c, self.norm, self.impl, name='preprocess0')(s0)
    s1 = ops.ReLUConvBN(c, self.norm, self.impl, name='preprocess1')(s1)

    input_rows, input_src, inner_rows, inner_src, inner_dst = edge_schedule(self.steps)
    stride = 2 if self.reduction else 1
    rows_of = lambda rows: None if edge_weights is None else edge_weights[rows]
    input_scan = _scan(_InputEdge, len(input_rows), (nn.broadcast, 0, 0, 0), self.remat)
    _, ys = input_scan(c, stride, self.norm, self.impl, self.partial_channels,
                       name='input_edges')(
        None, jnp.stack([s0, s1]), jnp.asarray(input_src), weights[input_rows],
        rows_of(input_rows))
    # Input edges come in (s0 -> node i, s1 -> node i) pairs: their sums start the nodes.
    nodes = ys.reshape((self.steps, 2) + ys.shape[1:]).sum(axis=1)
    if len(inner_rows):
      inner_scan = _scan(_InnerEdge, len(inner_rows), (0, 0, 0, 0), self.remat)
      nodes, _ = inner_scan(c, self.norm, self.impl, self.partial_channels, name='inner_edges')(
          nodes, jnp.asarray(inner_src), jnp.asarray(inner_dst), weights[inner_rows],
          rows_of(inner_rows))
    kept = nodes[self.steps - self.multiplier:]
    return jnp.moveaxis(kept, 0, -2).reshape(kept.shape[1:-1] + (-1,))


class Supernet(nn.Module):
  """DARTS's search `Network` (stem, `layers` cells, global pooling, classifier).

  Attributes:
    num_classes: classifier outputs.
    channels: C, the first cells' channel count (doubled at each reduction).
    layers: number of cells; reductions at layers // 3 and 2 · layers // 3.
    steps, multiplier, stem_multiplier: DARTS's cell size, output nodes, stem width factor.
    bn_groups: BatchNorm statistics over this many equal slices of the batch (1 = whole batch).
    remat: rematerialise each edge in the backward pass. On by default: the scan otherwise stacks
      every edge's intermediates (10 GiB at full size) and ran slower.
    impl: depthwise-convolution and pooling kernels: 'slices' (fast on CPU, slow to compile),
      'xla' (quick to compile; fast on accelerators), 'auto' (slices on CPU). See `kernels`.
    base: 'darts' | 'pc_darts' (the module docstring).
    partial_channels: K, PC-DARTS's channel proportion 1/K (its CIFAR search: 4).
    edge_normalization: PC-DARTS's β (A holds `BETA_KEYS`).
  """

  num_classes: int = 10
  channels: int = 16
  layers: int = 8
  steps: int = 4
  multiplier: int = 4
  stem_multiplier: int = 3
  bn_groups: int = 1
  remat: bool = True
  impl: str = 'auto'
  base: str = 'darts'
  partial_channels: int = 4
  edge_normalization: bool = True

  @property
  def arch_keys(self) -> tuple[str, ...]:
    """The keys of A this supernet takes."""
    uses_betas = self.base == 'pc_darts' and self.edge_normalization
    return ALPHA_KEYS + (BETA_KEYS if uses_betas else ())

  @nn.compact
  def __call__(self, alphas: Mapping[str, Array], x: Array) -> Array:
    norm = ops.search_norm(self.bn_groups)
    s = ops.Conv(self.stem_multiplier * self.channels, 3, 1, 1, name='stem_conv')(x)
    s0 = s1 = ops.BatchNorm(affine=True, groups=self.bn_groups, name='stem_bn')(s)
    weights = {k: jax.nn.softmax(alphas[k], axis=-1) for k in ALPHA_KEYS}
    edge_weights = {k: node_softmax(alphas[b], self.steps)
                    for k, b in zip(ALPHA_KEYS, BETA_KEYS) if b in self.arch_keys}
    k_parts = self.partial_channels if self.base == 'pc_darts' else 1
    c, reduction_prev = self.channels, False
    for i in range(self.layers):
      reduction = i in reduction_layers(self.layers)
      c = c * 2 if reduction else c
      cell = SearchCell(c, reduction, reduction_prev, norm, self.steps, self.multiplier,
                        self.remat, self.impl, k_parts, name=f'cell_{i}')
      key = 'alphas_reduce' if reduction else 'alphas_normal'
      s0, s1 = s1, cell(s0, s1, weights[key], edge_weights.get(key))
      reduction_prev = reduction
    return ops.Dense(self.num_classes, name='classifier')(jnp.mean(s1, axis=(1, 2)))


def count_supernet_params(channels: int, layers: int, num_classes: int, base: str = 'darts',
                          partial_channels: int = 4, steps: int = 4, multiplier: int = 4) -> int:
  """The search supernet's weight count (A excluded), from shapes alone (nothing runs)."""
  model = Supernet(num_classes=num_classes, channels=channels, layers=layers, steps=steps,
                   multiplier=multiplier, base=base, partial_channels=partial_channels)
  init, _ = make_explainer(model)
  shapes = jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3), jnp.float32))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def make_explainer(model: Supernet):
  """Pure functions of the explainer: `init(key, x) -> E` and `apply(E, A, x) -> logits`."""

  def init(key: Array, x: Array):
    arch = {**init_alphas(jax.random.PRNGKey(0), model.steps),
            **init_betas(jax.random.PRNGKey(1), model.steps)}
    return model.init(key, {k: arch[k] for k in model.arch_keys}, x)['params']

  def apply(params, alphas, x):
    return model.apply({'params': params}, alphas, x)

  return init, apply
