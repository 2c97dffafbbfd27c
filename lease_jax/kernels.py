"""Depthwise convolution and pooling kernels with derivatives shaped for XLA on CPU.

Why this file exists (measured on the 2-core CPU, batch 64, 32x32x16, see benchmarks/NOTES.md):
  * XLA's grouped convolution (`feature_group_count=C`) runs a 5x5 depthwise conv forward in
    ~89 ms; a sum of 25 shifted slices times per-channel weights takes ~1.5 ms.
  * But JAX's automatic transpose of that sum turns the kernel gradient into 25 separate
    reductions over the whole batch (~45 ms), and the input gradient into 25 pads (~8 ms).
    One *variadic* reduction (25 accumulators, one pass over memory) takes ~4.6 ms, and the input
    gradient written as a forward depthwise conv of the (dilated) cotangent with the flipped
    kernel takes ~1.3 ms.

So the depthwise convolution is three bilinear primitives closed under transposition, like
`lax.conv_general_dilated` is in JAX itself:

  conv(x, k)      y[b,o,c]  = sum_t x_pad[b, s*o + d*t, c] k[t, c]        (t: kernel taps)
  conv_tx(g, k)   the transpose of conv in x:  <conv(x, k), g> = <x, conv_tx(g, k)>
  conv_tk(x, g)   the transpose of conv in k:  <conv(x, k), g> = <k, conv_tk(x, g)>

Each is bilinear, so its JVP is the bilinear expansion (`ad.defbilinear`) and its transposes are
members of the same family. Derivatives of every order (grad of grad, jvp of grad) therefore stay
in the fast forms. Max pooling has a custom JVP routing the tangent through the first arg-max of
each window (PyTorch's choice), so its transpose is cheap pads instead of JAX's tie-splitting
`max` rule. Average pooling is the depthwise conv with a ones kernel, divided by the count of
valid (non-padding) positions (`count_include_pad=False`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core
from jax.interpreters import ad, batching, mlir

Array = jax.Array


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
  """Spatial output size of a convolution or pooling window (PyTorch's formula)."""
  return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def materialize(x: Array, like: Array | None = None) -> Array:
  """Returns x, computed once into memory (an exact identity).

  XLA:CPU fuses an elementwise producer into every consumer, and a k x k window consumer reads
  each element k² times: a node state (a sum of dozens of terms) would be recomputed once per tap
  of every convolution and pooling that reads it (measured: 8x the cell's FLOPs).
  `lax.optimization_barrier` does not stop this on CPU (the barrier is expanded before fusion).
  What does: XLA does not fuse an *expensive* producer (a floating-point division) into a consumer
  that reuses its elements. So x is divided elementwise by `sign(|x| + 1)`, which is exactly 1
  (NaN stays NaN; ±inf stay) and which the compiler cannot fold or turn into a multiplication.
  Where x is a tangent, give its primal as `like` (the divisor must not depend on x, so that the
  map stays linear; transposed, it materialises the cotangent).
  """
  return x / jnp.sign(jnp.abs(x if like is None else like) + 1)


def boundary(x: Array, like: Array | None = None) -> Array:
  """x through a 1x1 identity convolution: an exact identity that XLA computes into memory.

  `materialize` stops XLA from recomputing a producer inside consumers that read each element
  many times; it does not stop XLA from fusing many producers into one elementwise consumer.
  Scan bodies end in dynamic-update-slices, and XLA fused into them the whole backward of an
  edge: ~160 strided slices in one loop, ~30x slower per element than the same work in separate
  loops (benchmarks/NOTES.md). A dot is a library call on CPU, never fused with its producers:
  `x @ I` (C² multiply-adds per pixel, a few % of an edge's work) cuts the graph there, in the
  forward pass and, transposed, in the backward pass. The identity is scaled by the runtime 1
  `sign(|like_0| + 1)` so that the compiler cannot fold the dot away; `like` (default x) must be
  a primal value where x is a tangent, to keep the map linear. The dot runs at `HIGHEST`
  precision: where float32 matmuls default to TF32 (A100/H100), a default-precision identity
  would round x to 10 mantissa bits.
  """
  probe = (x if like is None else like).reshape(-1)[0]
  eye = jnp.eye(x.shape[-1], dtype=x.dtype) * jnp.sign(jnp.abs(probe) + 1).astype(x.dtype)
  return jnp.einsum('...c,cd->...d', x, eye, precision=jax.lax.Precision.HIGHEST)


def window_slices(x: Array, kernel: int, stride: int, padding: int, dilation: int,
                  pad_value: float = 0.0, materialized: bool = True) -> list[Array]:
  """For each kernel tap (row-major), the input values it sees at every output position.

  With `materialized`, the padded input is computed once into memory (see `materialize`) and
  every tap reads it; otherwise the producer of x may be fused into (recomputed by) each tap.
  """
  batch, height, width, channels = x.shape
  out_h = output_size(height, kernel, stride, padding, dilation)
  out_w = output_size(width, kernel, stride, padding, dilation)
  padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                   constant_values=pad_value)
  if materialized:
    padded = materialize(padded)
  windows = []
  for i in range(kernel):
    for j in range(kernel):
      start = (0, i * dilation, j * dilation, 0)
      limit = (batch, i * dilation + (out_h - 1) * stride + 1,
               j * dilation + (out_w - 1) * stride + 1, channels)
      windows.append(lax.slice(padded, start, limit, (1, stride, stride, 1)))
  return windows


# ---------------------------------------------------------------------------------------------
# Implementations (plain lax; each is what its primitive lowers to).


def _conv_impl(x, k, *, stride, padding, dilation):
  taps = k.reshape(-1, k.shape[-1])
  out = None
  for t, window in enumerate(window_slices(x, k.shape[0], stride, padding, dilation)):
    term = window * taps[t]
    out = term if out is None else out + term
  return out


def _conv_tx_impl(g, k, *, stride, padding, dilation, in_hw):
  # dx[h] = sum_t g_dilated[h + p - d t] k[t]: a stride-1 conv of the stride-dilated, re-padded
  # cotangent with the flipped kernel (derivation in the module docstring's terms).
  size = k.shape[0]
  lo = dilation * (size - 1) - padding
  pads = [(0, 0, 0)]
  for axis, extent in enumerate(in_hw):
    spanned = stride * (g.shape[1 + axis] - 1) + 1
    pads.append((lo, extent - spanned + padding, stride - 1))
  pads.append((0, 0, 0))
  g = lax.pad(g, jnp.zeros((), g.dtype), pads)
  # Input cotangents are summed over every op reading the same state: cut the graph here (see
  # `boundary`) so that the sum reads finished contributions.
  return boundary(_conv_impl(g, k[::-1, ::-1], stride=1, padding=0, dilation=dilation), k)


def _conv_tk_impl(x, g, *, stride, padding, dilation, size):
  # One variadic reduction (one accumulator per tap, a single pass over memory) over the spatial
  # axes, then a small sum over the batch: reducing (B, H, W) at once is ~5x slower on CPU for
  # 64 channels (XLA's loop order then strides through memory).
  g = materialize(g)
  products = [w * g for w in window_slices(x, size, stride, padding, dilation)]
  zeros = [jnp.zeros((), x.dtype)] * len(products)
  sums = lax.reduce(products, zeros, lambda a, b: [u + v for u, v in zip(a, b)], (1, 2))
  return jnp.stack(sums).sum(axis=1).reshape(size, size, x.shape[-1])


# ---------------------------------------------------------------------------------------------
# Primitives.


def _make_primitive(name, impl, out_shape):
  prim = jex_core.Primitive(name)
  jitted = jax.jit(impl, static_argnames=_STATIC[name])
  prim.def_impl(lambda a, b, **params: jitted(a, b, **params))

  def abstract_eval(a, b, **params):
    if a.dtype != b.dtype:
      raise TypeError(f'{name}: operand dtypes differ ({a.dtype} vs {b.dtype})')
    return jax.core.ShapedArray(out_shape(a.shape, b.shape, **params), a.dtype)

  prim.def_abstract_eval(abstract_eval)
  mlir.register_lowering(prim, mlir.lower_fun(impl, multiple_results=False))

  def batch_rule(args, dims, **params):
    # A mapped axis (the edges of a cell under `vmap`) is folded into the image batch when only
    # the image operand is mapped, and into the channel axis otherwise: a depthwise conv of E
    # stacks of C channels is one depthwise conv of E·C channels, so the mapped computation is
    # one call of the same primitive (and so are its derivatives).
    a, b = args
    da, db = dims
    n = a.shape[da] if da is not None else b.shape[db]
    if db is None and name != 'depthwise_tk':
      a = jnp.moveaxis(a, da, 0)
      out = prim.bind(a.reshape((-1,) + a.shape[2:]), b, **params)
      return out.reshape((n, -1) + out.shape[1:]), 0
    a = _channels_last_mapped(a, da, n)
    b = _channels_last_mapped(b, db, n)
    out = prim.bind(a.reshape(a.shape[:-2] + (-1,)), b.reshape(b.shape[:-2] + (-1,)), **params)
    return out.reshape(out.shape[:-1] + (n, -1)), out.ndim - 1

  batching.primitive_batchers[prim] = batch_rule
  return prim


def _channels_last_mapped(x, dim, n):
  """Moves a mapped axis to just before the channel axis (broadcasting an unmapped operand)."""
  if dim is None:
    return jnp.broadcast_to(x[..., None, :], x.shape[:-1] + (n, x.shape[-1]))
  return jnp.moveaxis(x, dim, -2)


def _conv_shape(x_shape, k_shape, *, stride, padding, dilation):
  b, h, w, c = x_shape
  size = k_shape[0]
  return (b, output_size(h, size, stride, padding, dilation),
          output_size(w, size, stride, padding, dilation), c)


def _tx_shape(g_shape, k_shape, *, stride, padding, dilation, in_hw):
  return (g_shape[0],) + tuple(in_hw) + (g_shape[-1],)


def _tk_shape(x_shape, g_shape, *, stride, padding, dilation, size):
  return (size, size, x_shape[-1])


_STATIC = {
    'depthwise_conv': ('stride', 'padding', 'dilation'),
    'depthwise_tx': ('stride', 'padding', 'dilation', 'in_hw'),
    'depthwise_tk': ('stride', 'padding', 'dilation', 'size'),
}
conv_p = _make_primitive('depthwise_conv', _conv_impl, _conv_shape)
conv_tx_p = _make_primitive('depthwise_tx', _conv_tx_impl, _tx_shape)
conv_tk_p = _make_primitive('depthwise_tk', _conv_tk_impl, _tk_shape)


def _geometry(params):
  return {k: params[k] for k in ('stride', 'padding', 'dilation')}


# conv(x, k): transposes in x and in k.
ad.defbilinear(
    conv_p,
    lambda ct, x, k, **p: conv_tx_p.bind(ct, k, in_hw=tuple(x.aval.shape[1:3]), **p),
    lambda ct, x, k, **p: conv_tk_p.bind(x, ct, size=k.aval.shape[0], **p))
# conv_tx(g, k) (x-shaped): <conv_tx(g, k), u> = <g, conv(u, k)> = <k, conv_tk(u, g)>.
ad.defbilinear(
    conv_tx_p,
    lambda ct, g, k, **p: conv_p.bind(ct, k, **_geometry(p)),
    lambda ct, g, k, **p: conv_tk_p.bind(ct, g, size=k.aval.shape[0], **_geometry(p)))
# conv_tk(x, g) (k-shaped): <conv_tk(x, g), K> = <conv(x, K), g> = <x, conv_tx(g, K)>.
ad.defbilinear(
    conv_tk_p,
    lambda ct, x, g, **p: conv_tx_p.bind(g, ct, in_hw=tuple(x.aval.shape[1:3]), **_geometry(p)),
    lambda ct, x, g, **p: conv_p.bind(x, ct, **_geometry(p)))


IMPLS = ('auto', 'slices', 'xla', 'smooth')


def resolve(impl: str) -> str:
  """'auto' is 'slices' on CPU and 'xla' on accelerators (their grouped convolutions are fast:
  a 5-cell C=8 supernet's hvp step at batch 16 took 6 s with 'slices', 81 s with 'xla' on 2 CPU
  cores); 'smooth' resolves as 'auto' does, with the kinks smoothed (`relu`, `max_pool`)."""
  if impl not in IMPLS:
    raise ValueError(f'kernel implementation {impl!r}; accepted: {", ".join(IMPLS)}')
  if impl in ('auto', 'smooth'):
    return 'slices' if jax.default_backend() == 'cpu' else 'xla'
  return impl


def relu(x: Array, impl: str = 'auto') -> Array:
  """ReLU; with `impl='smooth'`, GELU (exact, erf-based), which has no kink.

  'smooth' is a study option, not a search setting: it makes every network function C∞ (with
  `max_pool` averaging), so that the finite-difference hypergradient's error against the exact
  product can be split into truncation at kinks and float round-off (issue 11's V-curves).
  """
  return jax.nn.gelu(x, approximate=False) if impl == 'smooth' else jax.nn.relu(x)


def depthwise_conv(x: Array, kernel: Array, stride: int = 1, padding: int = 0,
                   dilation: int = 1, impl: str = 'auto') -> Array:
  """Depthwise 2-D convolution, `nn.Conv2d(C, C, k, stride, padding, dilation, groups=C)`.

  `y[b,h,w,c] = sum_{i,j} x[b, s h + d i - p, s w + d j - p, c] · kernel[i, j, c]` (zero outside).

  Args:
    x: [B, H, W, C].
    kernel: [k, k, C].
    impl: 'slices' (the primitives above: fast on CPU, but ~k² HLO ops per call, so slow to
      compile), 'xla' (XLA's grouped convolution: one op, quick to compile, fast on
      accelerators, slow on CPU), or 'auto'.
  """
  if resolve(impl) == 'xla':
    return reference_depthwise_conv(x, kernel, stride, padding, dilation)
  return conv_p.bind(x, kernel.astype(x.dtype), stride=int(stride), padding=int(padding),
                     dilation=int(dilation))


def reference_depthwise_conv(x: Array, kernel: Array, stride: int = 1, padding: int = 0,
                             dilation: int = 1) -> Array:
  """XLA's grouped convolution (`impl='xla'`; the tests' independent reference)."""
  return lax.conv_general_dilated(
      x, kernel[:, :, None, :].astype(x.dtype), (stride, stride), [(padding, padding)] * 2,
      rhs_dilation=(dilation, dilation), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])


# ---------------------------------------------------------------------------------------------
# Pooling.


def _xla_window(x, op, init, kernel, stride, padding):
  pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return lax.reduce_window(x, np.asarray(init, x.dtype), op, (1, kernel, kernel, 1),
                           (1, stride, stride, 1), pads)


def avg_pool(x: Array, kernel: int, stride: int, padding: int, impl: str = 'auto') -> Array:
  """`nn.AvgPool2d(kernel, stride, padding, count_include_pad=False)`."""
  if resolve(impl) == 'xla':
    total = _xla_window(x, lax.add, 0.0, kernel, stride, padding)
    count = _xla_window(jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype), lax.add, 0.0, kernel,
                        stride, padding)
    return total / count
  ones = jnp.ones((kernel, kernel, x.shape[-1]), x.dtype)
  total = depthwise_conv(x, ones, stride, padding, impl='slices')
  valid = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = sum(window_slices(valid, kernel, stride, padding, 1, materialized=False))
  return total / count


def max_pool(x: Array, stride: int, impl: str = 'auto') -> Array:
  """`nn.MaxPool2d(3, stride, padding=1)`; with `impl='smooth'` the 3x3 average (no kink)."""
  if impl == 'smooth':
    return avg_pool(x, 3, stride, 1, impl)
  if resolve(impl) == 'xla':
    return _xla_window(x, lax.max, -jnp.inf, 3, stride, 1)
  return _max_pool_slices(x, stride)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool_slices(x: Array, stride: int) -> Array:
  """`nn.MaxPool2d(3, stride, padding=1)`; the gradient goes to the first maximum of a window."""
  out = None
  for window in window_slices(x, 3, stride, 1, 1, pad_value=-jnp.inf, materialized=False):
    out = window if out is None else jnp.maximum(out, window)
  return out


@_max_pool_slices.defjvp
def _max_pool_jvp(stride, primals, tangents):
  (x,), (dx,) = primals, tangents
  windows = window_slices(x, 3, stride, 1, 1, pad_value=-jnp.inf, materialized=False)
  out = functools.reduce(jnp.maximum, windows)
  # Index of the first window position holding the maximum (scanning from the last one back),
  # computed once into memory: each of the 9 shifted reads below would otherwise recompute it.
  first = jnp.zeros(out.shape, x.dtype)
  for t in range(len(windows) - 1, -1, -1):
    first = jnp.where(windows[t] == out, jnp.asarray(t, x.dtype), first)
  first = materialize(first)
  # `boundary` on the tangent becomes, transposed, a cut after the 9 pads of the backward pass.
  dx = boundary(dx, like=x)
  dout = None
  for t, dwindow in enumerate(window_slices(dx, 3, stride, 1, 1, materialized=False)):
    term = jnp.where(first == t, dwindow, jnp.zeros((), dx.dtype))
    dout = term if dout is None else dout + term
  # Transposed, this materialises the incoming cotangent once for the 9 pads that read it.
  return out, materialize(dout, like=out)
