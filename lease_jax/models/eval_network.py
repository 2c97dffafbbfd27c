"""Evaluation networks built from a genotype: DARTS's `NetworkCIFAR` and `NetworkImageNet`.

Semantics follow the DARTS reference (`cnn/model.py`): affine BatchNorm with running statistics
(PyTorch's momentum 0.1, `batch_stats` collection), an auxiliary head on the output of the cell
at 2/3 depth (training only), and drop path on every non-identity operation of a cell with a
probability the caller ramps (`drop_path_prob · epoch / epochs` in DARTS), given at call time so
that changing it does not recompile.

`apply(variables, x, train=True, drop_path_prob=p, rngs={'dropout': key},
mutable=['batch_stats'])` returns `(logits, logits_aux)`; `logits_aux` is None in evaluation or
without the auxiliary head.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lease_jax import kernels, ops
from lease_jax.search_space import Genotype

Array = jax.Array


def drop_path(x: Array, drop_prob: Array, key: Array) -> Array:
  """Zeroes whole examples with probability `drop_prob`, scaling the rest by 1/keep (DARTS)."""
  keep = 1.0 - drop_prob
  mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, jnp.zeros((), x.dtype))


class EvalCell(nn.Module):
  """A discrete cell: two operations per node, summed; the output concatenates `concat`."""

  ops_and_inputs: Sequence[tuple[str, int]]
  concat: Sequence[int]
  channels: int
  reduction: bool
  reduction_prev: bool
  train: bool
  bn_groups: int = 1
  impl: str = 'auto'

  @nn.compact
  def __call__(self, s0: Array, s1: Array, drop_prob: Array) -> Array:
    norm = ops.eval_norm(self.train, self.bn_groups)
    c = self.channels
    if self.reduction_prev:
      s0 = ops.FactorizedReduce(c, norm, name='preprocess0')(s0)
    else:
      s0 = ops.ReLUConvBN(c, norm, name='preprocess0')(s0)
    s1 = ops.ReLUConvBN(c, norm, name='preprocess1')(s1)
    states = [s0, s1]
    for node in range(len(self.ops_and_inputs) // 2):
      total = None
      for k in (2 * node, 2 * node + 1):
        name, index = self.ops_and_inputs[k]
        stride = 2 if self.reduction and index < 2 else 1
        op = ops.make_op(name, c, stride, norm, search=False, module_name=f'op{k}_{name}',
                         impl=self.impl)
        h = op(states[index])
        if self.train and not isinstance(op, ops.Identity):
          h = drop_path(h, drop_prob, self.make_rng('dropout'))
        total = h if total is None else total + h
      states.append(total)
    return jnp.concatenate([states[i] for i in self.concat], axis=-1)


class AuxiliaryHead(nn.Module):
  """ReLU, 5x5 average pool, 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, [BN], ReLU, linear."""

  num_classes: int
  pool_stride: int  # 3 for CIFAR (8x8 input), 2 for ImageNet (7x7 input)
  bn_after_768: bool  # the ImageNet head omits it (DARTS's note)
  train: bool
  bn_groups: int = 1
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    norm = ops.eval_norm(self.train, self.bn_groups)
    if min(x.shape[1:3]) < 5 + self.pool_stride:
      raise ValueError(f'the auxiliary head needs a feature map of at least {5 + self.pool_stride} '
                       f'pixels at 2/3 depth (8x8 for 32x32 CIFAR images, 7x7 for 224x224 '
                       f'ImageNet images); got {x.shape[1]}x{x.shape[2]}: use larger images or '
                       f'auxiliary=False')
    x = kernels.avg_pool(nn.relu(x), 5, self.pool_stride, 0, self.impl)
    x = nn.relu(norm()(ops.Conv(128, 1)(x)))
    x = ops.Conv(768, 2)(x)
    if self.bn_after_768:
      x = norm()(x)
    x = nn.relu(x)
    return ops.Dense(self.num_classes, name='classifier')(x.reshape(x.shape[0], -1))


class _EvalNetwork(nn.Module):
  """The cells, auxiliary head and classifier shared by the CIFAR and ImageNet networks."""

  genotype: Genotype
  channels: int
  num_classes: int
  layers: int
  auxiliary: bool
  bn_groups: int = 1
  impl: str = 'auto'  # depthwise-conv and pooling kernels, see `kernels.depthwise_conv`

  def cells(self, s0, s1, reduction_prev, train, drop_prob, aux_stride, aux_bn):
    c = self.channels
    logits_aux = None
    for i in range(self.layers):
      reduction = i in (self.layers // 3, 2 * self.layers // 3)
      c = c * 2 if reduction else c
      genes, concat = ((self.genotype.reduce, self.genotype.reduce_concat) if reduction
                       else (self.genotype.normal, self.genotype.normal_concat))
      cell = EvalCell(tuple(genes), tuple(concat), c, reduction, reduction_prev, train,
                      self.bn_groups, self.impl, name=f'cell_{i}')
      s0, s1 = s1, cell(s0, s1, drop_prob)
      reduction_prev = reduction
      if i == 2 * self.layers // 3 and self.auxiliary:
        head = AuxiliaryHead(self.num_classes, aux_stride, aux_bn, train, self.bn_groups,
                             self.impl, name='auxiliary_head')
        if train or self.is_initializing():
          logits_aux = head(s1)
    logits = ops.Dense(self.num_classes, name='classifier')(jnp.mean(s1, axis=(1, 2)))
    return logits, (logits_aux if train else None)


class NetworkCIFAR(_EvalNetwork):
  """DARTS's `NetworkCIFAR`: 3x3 stem to 3C + BN, `layers` cells, auxiliary head at 2/3."""

  @nn.compact
  def __call__(self, x: Array, train: bool = False, drop_path_prob: float | Array = 0.0):
    norm = ops.eval_norm(train, self.bn_groups)
    s = norm(name='stem_bn')(ops.Conv(3 * self.channels, 3, 1, 1, name='stem_conv')(x))
    return self.cells(s, s, False, train, jnp.asarray(drop_path_prob, x.dtype),
                      aux_stride=3, aux_bn=True)


class NetworkImageNet(_EvalNetwork):
  """DARTS's `NetworkImageNet`: two stride-2 stems and a stride-2 stem1 (224 -> 28 pixels)."""

  @nn.compact
  def __call__(self, x: Array, train: bool = False, drop_path_prob: float | Array = 0.0):
    norm = ops.eval_norm(train, self.bn_groups)
    c = self.channels
    s0 = norm(name='stem0_bn0')(ops.Conv(c // 2, 3, 2, 1, name='stem0_conv0')(x))
    s0 = norm(name='stem0_bn1')(ops.Conv(c, 3, 2, 1, name='stem0_conv1')(nn.relu(s0)))
    s1 = norm(name='stem1_bn')(ops.Conv(c, 3, 2, 1, name='stem1_conv')(nn.relu(s0)))
    return self.cells(s0, s1, True, train, jnp.asarray(drop_path_prob, x.dtype),
                      aux_stride=2, aux_bn=False)


def count_params(params, exclude: str | None = None) -> int:
  """Number of trainable weights; `exclude` drops subtrees whose path contains that name."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return int(sum(leaf.size for path, leaf in leaves
                 if exclude is None or exclude not in jax.tree_util.keystr(path)))


def count_genotype_params(genotype: Genotype, network: str, channels: int, layers: int,
                          num_classes: int) -> tuple[int, int]:
  """(all weights, weights without the auxiliary head) of an evaluation network.

  Shapes only (`jax.eval_shape`): nothing is compiled or allocated.
  """
  if network == 'cifar':
    model, size = NetworkCIFAR(genotype, channels, num_classes, layers, True), 32
  else:
    model, size = NetworkImageNet(genotype, channels, num_classes, layers, True), 224
  key = jax.random.PRNGKey(0)
  shapes = jax.eval_shape(functools.partial(model.init, train=True),
                          {'params': key, 'dropout': key}, jnp.zeros((2, size, size, 3)))
  params = shapes['params']
  return count_params(params), count_params(params, exclude='auxiliary_head')
