"""The DARTS operations, in NHWC, shaped for XLA.

Semantics follow the DARTS reference (`cnn/operations.py`) exactly: the same operations, the same
paddings and strides, the same parameter shapes (so parameter counts match to the unit), PyTorch's
default initialisation (uniform in ±1/sqrt(fan_in)), and BatchNorm with PyTorch's conventions.

Two choices are for speed, not semantics (DESIGN.md §6): depthwise convolutions and pooling use
the kernels of `lease_jax.kernels` (shifted slices with hand-shaped derivatives; XLA's grouped
convolution is several times slower on CPU), and a 1x1 convolution is an `einsum` over channels.

Every operation is a `flax.linen` module whose normalisation layer is injected (`norm`), so the
same code serves the search network (BatchNorm on batch statistics, `affine=False`, no state:
differentiable to any order) and the evaluation networks (affine BatchNorm with running
statistics).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lease_jax.kernels import avg_pool, depthwise_conv, max_pool, relu

Array = jax.Array
ModuleDef = Any


def torch_default_init(fan_in: int) -> Callable[..., Array]:
  """PyTorch's default weight init for Conv2d / Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class BatchNorm(nn.Module):
  """`torch.nn.BatchNorm2d` over the channel (last) axis.

  Training normalises with the biased batch variance; running statistics (when tracked) use
  PyTorch's momentum convention (`running = (1 - momentum) * running + momentum * batch`) and the
  unbiased variance, as PyTorch does.

  Attributes:
    affine: learn a per-channel scale (init 1) and bias (init 0).
    track_running_stats: keep running mean and variance in the `batch_stats` collection. The search
      networks set this False: they always use batch statistics, which keeps them pure functions
      of (params, input) and differentiable to any order.
    use_running_average: normalise with the running statistics (evaluation mode). Only meaningful
      with `track_running_stats`.
    groups: statistics are computed separately over `groups` equal, consecutive slices of the batch
      (per-device statistics when the batch is sharded over `groups` devices, as PyTorch's
      DataParallel does). 1 = statistics of the whole (global) batch.
  """

  affine: bool = True
  track_running_stats: bool = False
  use_running_average: bool = False
  momentum: float = 0.1
  epsilon: float = 1e-5
  groups: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    channels = x.shape[-1]
    if self.track_running_stats:
      running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (channels,), jnp.float32)
      running_var = self.variable('batch_stats', 'var', jnp.ones, (channels,), jnp.float32)
    if self.track_running_stats and self.use_running_average:
      y = (x - running_mean.value) * lax.rsqrt(running_var.value + self.epsilon)
    else:
      if x.shape[0] % self.groups:
        raise ValueError(f'BatchNorm groups={self.groups} does not divide the batch of '
                         f'{x.shape[0]}')
      grouped = x.reshape((self.groups, -1) + x.shape[1:])
      axes = tuple(range(1, grouped.ndim - 1))
      mean = jnp.mean(grouped, axes, keepdims=True)
      var = jnp.mean(jnp.square(grouped - mean), axes, keepdims=True)
      y = ((grouped - mean) * lax.rsqrt(var + self.epsilon)).reshape(x.shape)
      if self.track_running_stats and not self.is_initializing():
        count = grouped[0].size // channels
        batch_mean = jnp.mean(mean, axis=tuple(range(mean.ndim - 1)))
        batch_var = jnp.mean(var, axis=tuple(range(var.ndim - 1))) * count / max(count - 1, 1)
        m = self.momentum
        running_mean.value = (1 - m) * running_mean.value + m * lax.stop_gradient(batch_mean)
        running_var.value = (1 - m) * running_var.value + m * lax.stop_gradient(batch_var)
    if self.affine:
      scale = self.param('scale', nn.initializers.ones, (channels,), jnp.float32)
      bias = self.param('bias', nn.initializers.zeros, (channels,), jnp.float32)
      y = y * scale + bias
    return y


def search_norm(groups: int = 1) -> ModuleDef:
  """The search networks' normalisation: batch statistics, no affine, no state (DARTS)."""
  return functools.partial(BatchNorm, affine=False, track_running_stats=False, groups=groups)


def eval_norm(train: bool, groups: int = 1) -> ModuleDef:
  """The evaluation networks' normalisation: affine, running statistics (PyTorch defaults)."""
  return functools.partial(BatchNorm, affine=True, track_running_stats=True,
                           use_running_average=not train, groups=groups)


def pointwise_conv(x: Array, kernel: Array) -> Array:
  """1x1 convolution: `y[..., d] = sum_c x[..., c] kernel[c, d]`."""
  return jnp.einsum('bhwc,cd->bhwd', x, kernel)


# ---------------------------------------------------------------------------------------------
# Parameterised layers.


class DepthwiseConv(nn.Module):
  """`nn.Conv2d(C, C, k, stride, padding, dilation, groups=C, bias=False)`."""

  kernel_size: int
  stride: int = 1
  padding: int = 0
  dilation: int = 1
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k = self.kernel_size
    kernel = self.param('kernel', torch_default_init(k * k), (k, k, x.shape[-1]), jnp.float32)
    return depthwise_conv(x, kernel.astype(x.dtype), self.stride, self.padding, self.dilation,
                          self.impl)


class PointwiseConv(nn.Module):
  """`nn.Conv2d(C_in, C_out, 1, bias=False)`, optionally strided."""

  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c_in = x.shape[-1]
    kernel = self.param('kernel', torch_default_init(c_in), (c_in, self.features), jnp.float32)
    if self.stride > 1:
      x = x[:, ::self.stride, ::self.stride, :]
    return pointwise_conv(x, kernel.astype(x.dtype))


class Conv(nn.Module):
  """`nn.Conv2d(C_in, C_out, kernel, stride, padding, bias=False)` (stems, heads, ResNet).

  `kernel_size`, `stride` and `padding` are an int or an (height, width) pair.
  """

  features: int
  kernel_size: int | tuple[int, int]
  stride: int | tuple[int, int] = 1
  padding: int | tuple[int, int] = 0

  @nn.compact
  def __call__(self, x: Array) -> Array:
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    (kh, kw), stride, (ph, pw) = pair(self.kernel_size), pair(self.stride), pair(self.padding)
    c_in = x.shape[-1]
    kernel = self.param('kernel', torch_default_init(c_in * kh * kw), (kh, kw, c_in, self.features),
                        jnp.float32)
    return lax.conv_general_dilated(
        x, kernel.astype(x.dtype), stride, [(ph, ph), (pw, pw)],
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class Dense(nn.Module):
  """`nn.Linear(C_in, C_out)` with PyTorch's init."""

  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c_in = x.shape[-1]
    init = torch_default_init(c_in)
    kernel = self.param('kernel', init, (c_in, self.features), jnp.float32)
    bias = self.param('bias', init, (self.features,), jnp.float32)
    return x @ kernel.astype(x.dtype) + bias.astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# The DARTS operations.


class ReLUConvBN(nn.Module):
  """ReLU -> 1x1 conv -> BN (cell preprocessing)."""

  features: int
  norm: ModuleDef
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return self.norm()(PointwiseConv(self.features)(relu(x, self.impl)))


class FactorizedReduce(nn.Module):
  """ReLU -> [1x1 stride-2 conv of x, 1x1 stride-2 conv of x shifted by one pixel] -> BN."""

  features: int
  norm: ModuleDef
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.features % 2:
      raise ValueError(f'FactorizedReduce needs an even channel count, got {self.features}')
    x = relu(x, self.impl)
    half = self.features // 2
    even = PointwiseConv(half, stride=2, name='conv_1')(x)
    odd = PointwiseConv(half, stride=2, name='conv_2')(x[:, 1:, 1:, :])
    return self.norm()(jnp.concatenate([even, odd], axis=-1))


class SepConv(nn.Module):
  """Two stacks of ReLU -> depthwise k x k -> 1x1 -> BN; only the first is strided."""

  features: int
  kernel_size: int
  stride: int
  norm: ModuleDef
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k, c_in = self.kernel_size, x.shape[-1]
    pad = (k - 1) // 2
    x = DepthwiseConv(k, self.stride, pad, impl=self.impl)(relu(x, self.impl))
    x = self.norm()(PointwiseConv(c_in)(x))
    x = DepthwiseConv(k, 1, pad, impl=self.impl)(relu(x, self.impl))
    return self.norm()(PointwiseConv(self.features)(x))


class DilConv(nn.Module):
  """ReLU -> depthwise k x k, dilation 2 -> 1x1 -> BN."""

  features: int
  kernel_size: int
  stride: int
  norm: ModuleDef
  dilation: int = 2
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    pad = self.dilation * (self.kernel_size - 1) // 2
    x = DepthwiseConv(self.kernel_size, self.stride, pad, self.dilation, self.impl)(
        relu(x, self.impl))
    return self.norm()(PointwiseConv(self.features)(x))


class Pool(nn.Module):
  """3x3 max or average pooling (padding 1); the search network follows it with BN."""

  kind: str
  stride: int
  norm: ModuleDef | None = None
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.kind == 'max':
      y = max_pool(x, self.stride, self.impl)
    else:
      y = avg_pool(x, 3, self.stride, 1, self.impl)
    return y if self.norm is None else self.norm()(y)


class Conv7x1_1x7(nn.Module):
  """ReLU -> conv (1, 7) -> conv (7, 1) -> BN (AmoebaNet's factorised 7x7)."""

  features: int
  stride: int
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = Conv(self.features, (1, 7), (1, self.stride), (0, 3))(nn.relu(x))
    x = Conv(self.features, (7, 1), (self.stride, 1), (3, 0))(x)
    return self.norm()(x)


class Identity(nn.Module):
  """The stride-1 skip connection."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return x


class Zero(nn.Module):
  """The `none` operation: zeros, subsampled by the stride."""

  stride: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return jnp.zeros_like(x[:, ::self.stride, ::self.stride, :])


def channel_shuffle(x: Array, groups: int) -> Array:
  """ShuffleNet's channel shuffle (PC-DARTS's `channel_shuffle`) on NHWC: the channels, seen as
  `groups` consecutive groups of C/groups, are interleaved — output channel i·groups + g is
  input channel g·(C/groups) + i."""
  *lead, channels = x.shape
  x = x.reshape(*lead, groups, channels // groups)
  return jnp.swapaxes(x, -1, -2).reshape(*lead, channels)


def max_pool_2x2(x: Array, impl: str = 'auto') -> Array:
  """`nn.MaxPool2d(2, 2)`: the maximum of each 2x2 window, stride 2, odd sizes floored. Written
  as the maximum of four strided slices, so that it is differentiable to any order; with the
  study kernels (`impl='smooth'`) their mean, as `kernels` smooths every max pool."""
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  x = x[:, :h, :w, :]
  corners = (x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2])
  if impl == 'smooth':
    return sum(corners) / 4
  return jnp.maximum(jnp.maximum(corners[0], corners[1]), jnp.maximum(corners[2], corners[3]))


def partial_channel_edge(x: Array, mix: Callable[[Array], Array], k: int, stride: int,
                         impl: str = 'auto') -> Array:
  """PC-DARTS's partial channel connection (`model_search.MixedOp.forward`): `mix` runs on the
  first C/k channels, the other channels bypass it (through a 2x2 max pool when the edge has
  stride 2), and the two parts, concatenated, are channel-shuffled in k groups.

    y = shuffle_k([mix(x[..., :C/k]), pool_s(x[..., C/k:])])
  """
  part = x.shape[-1] // k
  mixed = mix(x[..., :part])
  bypass = x[..., part:]
  if stride == 2:
    bypass = max_pool_2x2(bypass, impl)
  return channel_shuffle(jnp.concatenate([mixed, bypass.astype(mixed.dtype)], axis=-1), k)


def make_op(name: str, channels: int, stride: int, norm: ModuleDef, *, search: bool,
            module_name: str | None = None, impl: str = 'auto') -> nn.Module:
  """`OPS[name](C, stride, affine)` of the DARTS reference.

  Args:
    name: one of `search_space.PRIMITIVES`.
    channels: C, the op's input and output channels.
    stride: 1, or 2 on the input edges of a reduction cell.
    norm: the normalisation layer (see `search_norm` / `eval_norm`).
    search: True inside the search network's MixedOp, where pooling is followed by BN
      (affine=False), as DARTS's `model_search.MixedOp` does.
    module_name: the Flax submodule name.
    impl: depthwise-convolution and pooling kernels ('auto', 'slices', 'xla', 'smooth'; see
      `kernels`).
  """
  kw = dict(name=module_name)
  if name == 'none':
    return Zero(stride, **kw)
  if name in ('max_pool_3x3', 'avg_pool_3x3'):
    return Pool(name[:3], stride, norm if search else None, impl, **kw)
  if name == 'skip_connect':
    return Identity(**kw) if stride == 1 else FactorizedReduce(channels, norm, impl, **kw)
  if name.startswith('sep_conv_'):
    return SepConv(channels, int(name[-1]), stride, norm, impl, **kw)
  if name.startswith('dil_conv_'):
    return DilConv(channels, int(name[-1]), stride, norm, impl=impl, **kw)
  if name == 'conv_7x1_1x7':
    return Conv7x1_1x7(channels, stride, norm, **kw)
  raise ValueError(f'unknown operation {name!r}')
