"""The depthwise-convolution primitives and pooling kernels against XLA's own operations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from lease_jax import kernels

# (kernel, stride, padding, dilation, size): every geometry the DARTS operations use, plus odd
# sizes where a strided window does not tile the input.
GEOMETRIES = [(3, 1, 1, 1, 8), (5, 1, 2, 1, 8), (3, 2, 1, 1, 9), (5, 2, 2, 1, 8),
              (3, 1, 2, 2, 7), (5, 2, 4, 2, 9)]


def _inputs(size, k, dtype=jnp.float64):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3), dtype)
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, 3), dtype)
  return x, w


@pytest.mark.parametrize('k,s,p,d,size', GEOMETRIES)
def test_depthwise_matches_grouped_conv_to_third_order(x64, k, s, p, d, size):
  x, w = _inputs(size, k)
  ours = lambda x, w: kernels.depthwise_conv(x, w, s, p, d)
  ref = lambda x, w: kernels.reference_depthwise_conv(x, w, s, p, d)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-12, atol=1e-12)
  loss = lambda f: (lambda x, w: jnp.sum(jnp.sin(f(x, w))))
  for a, b in zip(jax.grad(loss(ours), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
  # Hessian-vector products: forward-over-reverse and reverse-over-reverse.
  v = (jnp.cos(x), jnp.sin(w))
  hvp = lambda f: jax.jvp(jax.grad(loss(f), (0, 1)), (x, w), v)[1]
  for a, b in zip(hvp(ours), hvp(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
  rr = lambda f: jax.grad(lambda x, w: jnp.vdot(jax.grad(loss(f), 1)(x, w), v[1]), (0, 1))(x, w)
  for a, b in zip(rr(ours), rr(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
  check_grads(ours, (x, w), order=3, modes=('fwd', 'rev'))


@pytest.mark.parametrize('in_axes', [(0, 0), (0, None), (None, 0)])
def test_depthwise_under_vmap(x64, in_axes):
  k, s, p, d, size = 5, 2, 2, 1, 8
  xs = jax.random.normal(jax.random.PRNGKey(0), (3, 2, size, size, 4))
  ws = jax.random.normal(jax.random.PRNGKey(1), (3, k, k, 4))
  x = xs if in_axes[0] == 0 else xs[0]
  w = ws if in_axes[1] == 0 else ws[0]
  ours = jax.vmap(lambda x, w: kernels.depthwise_conv(x, w, s, p, d), in_axes)
  ref = jax.vmap(lambda x, w: kernels.reference_depthwise_conv(x, w, s, p, d), in_axes)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-12, atol=1e-12)
  loss = lambda f: (lambda x, w: jnp.sum(jnp.sin(f(x, w))))
  v = (jnp.cos(x), jnp.sin(w))
  hvp = lambda f: jax.jvp(jax.grad(loss(f), (0, 1)), (x, w), v)[1]
  for a, b in zip(hvp(ours), hvp(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def _window_reference(x, op, init, stride):
  window, strides = (1, 3, 3, 1), (1, stride, stride, 1)
  return lax.reduce_window(x, init, op, window, strides, ((0, 0), (1, 1), (1, 1), (0, 0)))


@pytest.mark.parametrize('stride', [1, 2])
def test_pools_match_reduce_window(x64, stride):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
  ref_max = lambda x: _window_reference(x, lax.max, -jnp.inf, stride)
  np.testing.assert_allclose(kernels.max_pool(x, stride), ref_max(x))
  # Without ties, the first-argmax rule and XLA's select-and-scatter agree.
  g = jax.grad(lambda x: jnp.sum(jnp.sin(kernels.max_pool(x, stride))))(x)
  np.testing.assert_allclose(g, jax.grad(lambda x: jnp.sum(jnp.sin(ref_max(x))))(x), rtol=1e-12)
  check_grads(lambda x: kernels.max_pool(x, stride), (x,), order=2, modes=('fwd', 'rev'))
  total = _window_reference(x, lax.add, 0.0, stride)
  count = _window_reference(jnp.ones_like(x), lax.add, 0.0, stride)
  np.testing.assert_allclose(kernels.avg_pool(x, 3, stride, 1), total / count, rtol=1e-12)
  check_grads(lambda x: kernels.avg_pool(x, 3, stride, 1), (x,), order=2, modes=('fwd', 'rev'))


def test_max_pool_ties_go_to_the_first_maximum():
  x = jnp.zeros((1, 3, 3, 1))  # every window is all ties
  g = jax.grad(lambda x: kernels.max_pool(x, 2).sum())(x)
  # Output (0, 0) sees rows/cols {-1, 0, 1}: its first valid maximum is input (0, 0).
  assert g[0, 0, 0, 0] == 1.0 and g.sum() == 4.0


def test_materialize_and_boundary_are_exact_identities(x64):
  x = jnp.array([[-2.5, 0.0, 3.0, jnp.inf, -jnp.inf]])
  np.testing.assert_array_equal(kernels.materialize(x), x)
  y = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 5))
  np.testing.assert_array_equal(kernels.boundary(y), y)
  np.testing.assert_array_equal(jax.grad(lambda y: jnp.sum(kernels.boundary(y) * y))(y), 2 * y)
  assert jnp.isnan(kernels.materialize(jnp.array([jnp.nan]))).all()
