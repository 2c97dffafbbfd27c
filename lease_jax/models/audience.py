"""The audience: ResNet-18, CIFAR variant (3x3 stem, no max-pool), `logits = apply(W, x)`.

The layout of the widely used CIFAR ResNet-18 (11,173,962 weights for 10 classes): a 3x3 stem to
64 channels, four stages of two BasicBlocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2; a
1x1 conv + BN shortcut where the shape changes), global average pooling, a linear classifier.
`blocks_per_stage=1` gives the same layout with one BasicBlock a stage (ResNet-10, 4,903,242
weights): a smaller audience (the tests' tiny config uses it; a tiny hvp step's programs
compiled in 13.9 s against ResNet-18's 18.3 s, one run each on 2 cores; the paper's audience is
ResNet-18).
During search the audience is a pure function: BatchNorm uses batch statistics (as the search
supernet does), so it can be differentiated through its virtual step to any order.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lease_jax import kernels, ops

Array = jax.Array


class BasicBlock(nn.Module):
  features: int
  stride: int
  norm: ops.ModuleDef
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = kernels.relu(self.norm()(ops.Conv(self.features, 3, self.stride, 1)(x)), self.impl)
    y = self.norm()(ops.Conv(self.features, 3, 1, 1)(y))
    if self.stride != 1 or x.shape[-1] != self.features:
      x = self.norm()(ops.Conv(self.features, 1, self.stride, 0)(x))
    return kernels.relu(x + y, self.impl)


class ResNet(nn.Module):
  """The CIFAR ResNet for 32x32 inputs: ResNet-18 by default.

  Attributes:
    num_classes: classifier outputs.
    width: channels of the first stage (64); stages double it.
    blocks_per_stage: BasicBlocks in each of the four stages (2: ResNet-18; 1: ResNet-10).
    bn_groups: BatchNorm statistics over this many equal slices of the batch.
    impl: 'smooth' replaces ReLU by GELU (`kernels.relu`; a study option); anything else, ReLU.
  """

  num_classes: int = 10
  width: int = 64
  blocks_per_stage: int = 2
  bn_groups: int = 1
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    norm = lambda: ops.BatchNorm(affine=True, groups=self.bn_groups)
    x = kernels.relu(norm()(ops.Conv(self.width, 3, 1, 1, name='stem')(x)), self.impl)
    for stage, stride in enumerate((1, 2, 2, 2)):
      for block in range(self.blocks_per_stage):
        x = BasicBlock(self.width * 2 ** stage, stride if block == 0 else 1, norm, self.impl,
                       name=f'layer{stage + 1}_{block}')(x)
    return ops.Dense(self.num_classes, name='classifier')(jnp.mean(x, axis=(1, 2)))


def make_audience(model: ResNet):
  """Pure functions of the audience: `init(key, x) -> W` and `apply(W, x) -> logits`."""

  def init(key: Array, x: Array):
    return model.init(key, x)['params']

  def apply(params, x):
    return model.apply({'params': params}, x)

  return init, apply
