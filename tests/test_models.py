"""The explainer supernet, the audience ResNet-18 and the evaluation networks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lease_jax.models import audience, eval_network, explainer
from lease_jax.search_space import GENOTYPES

KEY = jax.random.PRNGKey(0)


def _count(tree, exclude=None):
  return eval_network.count_params(tree, exclude)


def test_parameter_counts_match_darts_pytorch():
  supernet = explainer.Supernet(num_classes=10, channels=16, layers=8)
  shapes = jax.eval_shape(supernet.init, KEY, explainer.init_alphas(KEY),
                          jnp.zeros((2, 32, 32, 3)))
  assert _count(shapes['params']) == 1_930_618
  assert set(shapes) == {'params'}  # BatchNorm keeps no state in search

  def eval_shapes(model, size):
    return jax.eval_shape(functools.partial(model.init, train=True),
                          {'params': KEY, 'dropout': KEY}, jnp.zeros((2, size, size, 3)))

  cifar = eval_shapes(eval_network.NetworkCIFAR(GENOTYPES['DARTS_V2'], 36, 10, 20, True), 32)
  assert _count(cifar['params'], 'auxiliary_head') == 3_349_342
  imagenet = eval_shapes(
      eval_network.NetworkImageNet(GENOTYPES['DARTS_V2'], 48, 1000, 14, True), 224)
  assert _count(imagenet['params'], 'auxiliary_head') == 4_718_752
  resnet = jax.eval_shape(audience.ResNet(10).init, KEY, jnp.zeros((2, 32, 32, 3)))
  assert _count(resnet['params']) == 11_173_962


def _cifar_resnet_weights(blocks_per_stage, width=64, classes=10):
  """The CIFAR ResNet's weights counted by hand: a 3x3 stem and its BN; per BasicBlock two 3x3
  convs with their BNs and, where the channels change, a 1x1 shortcut with its BN; the linear
  classifier."""
  total, c_in = 27 * width + 2 * width, width
  for stage in range(4):
    c = width * 2 ** stage
    for _ in range(blocks_per_stage):
      total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c + (c_in * c + 2 * c if c_in != c else 0)
      c_in = c
  return total + c_in * classes + classes


@pytest.mark.parametrize('blocks,expected', [(2, 11_173_962), (1, 4_903_242)])
def test_audience_depth_is_blocks_per_stage(blocks, expected):
  # ResNet-18 (the paper's audience) and ResNet-10 (tiny's): the count by hand and the network's
  assert _cifar_resnet_weights(blocks) == expected
  shapes = jax.eval_shape(audience.ResNet(10, blocks_per_stage=blocks).init, KEY,
                          jnp.zeros((2, 32, 32, 3)))
  assert _count(shapes['params']) == expected
  assert len([name for name in shapes['params'] if name.startswith('layer')]) == 4 * blocks


@pytest.fixture(scope='module')
def tiny_supernet():
  # XLA's own kernels compile several times faster; `test_kernel_implementations_agree` ties
  # them to the CPU kernels at network level.
  model = explainer.Supernet(num_classes=5, channels=4, layers=3, impl='xla')
  init, apply = explainer.make_explainer(model)
  x = jax.random.normal(KEY, (4, 8, 8, 3))
  params = jax.jit(init)(KEY, x)
  return apply, params, explainer.init_alphas(jax.random.PRNGKey(1)), x


def _loss(apply, params, alphas, x):
  logits = apply(params, alphas, x)
  return jnp.mean(jax.nn.log_softmax(logits)[:, 0])


def test_supernet_shapes_and_gradients(tiny_supernet):
  apply, params, alphas, x = tiny_supernet
  logits = jax.jit(apply)(params, alphas, x)
  assert logits.shape == (4, 5) and jnp.all(jnp.isfinite(logits))
  grads = jax.jit(jax.grad(functools.partial(_loss, apply), (0, 1)))(params, alphas, x)
  for tree in grads:
    leaves = jax.tree.leaves(tree)
    assert all(jnp.all(jnp.isfinite(g)) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0
  # Every edge's α row gets a gradient (each edge is used).
  assert jnp.all(jnp.abs(grads[1]['alphas_normal']).sum(axis=1) > 0)
  assert jnp.all(jnp.abs(grads[1]['alphas_reduce']).sum(axis=1) > 0)


def test_supernet_second_order(tiny_supernet):
  apply, params, alphas, x = tiny_supernet
  loss = lambda p, a: _loss(apply, p, a, x)

  @jax.jit
  def mixed_products(params, alphas):
    # DARTS's implicit term: grad_A <grad_E L, v>, forward-over-reverse and reverse-over-reverse.
    v = jax.tree.map(jnp.ones_like, params)
    fwd = jax.jvp(lambda p: jax.grad(loss, 1)(p, alphas), (params,), (v,))[1]
    rev = jax.grad(lambda a: sum(jnp.vdot(g, w) for g, w in zip(
        jax.tree.leaves(jax.grad(loss, 0)(params, a)), jax.tree.leaves(v))))(alphas)
    return fwd, rev

  fwd, rev = mixed_products(params, alphas)
  for a, b in zip(jax.tree.leaves(fwd), jax.tree.leaves(rev)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5)
  assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(fwd)) > 0


def test_kernel_implementations_agree(tiny_supernet):
  apply_xla, params, alphas, x = tiny_supernet
  model = explainer.Supernet(num_classes=5, channels=4, layers=3, impl='slices')
  _, apply_slices = explainer.make_explainer(model)

  def value_and_grads(apply):
    return jax.jit(jax.value_and_grad(functools.partial(_loss, apply), (0, 1)))(params, alphas, x)

  (v1, g1), (v2, g2) = value_and_grads(apply_slices), value_and_grads(apply_xla)
  np.testing.assert_allclose(v1, v2, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_edge_schedule_covers_every_edge_once():
  input_rows, _, inner_rows, inner_src, inner_dst = explainer.edge_schedule(4)
  assert sorted(list(input_rows) + list(inner_rows)) == list(range(14))
  assert all(src < dst for src, dst in zip(inner_src, inner_dst))


def test_audience_forward():
  model = audience.ResNet(num_classes=7, width=4)
  init, apply = audience.make_audience(model)
  x = jax.random.normal(KEY, (2, 16, 16, 3))
  params = jax.jit(init)(KEY, x)
  assert jax.jit(apply)(params, x).shape == (2, 7)


@pytest.mark.parametrize('network,size', [('cifar', 32), ('imagenet', 224)])
def test_eval_network_train_and_eval(network, size):
  cls = eval_network.NetworkCIFAR if network == 'cifar' else eval_network.NetworkImageNet
  model = cls(GENOTYPES['DARTS_V2'], 4, 3, 3, True, impl='xla')
  x = jax.random.normal(KEY, (2, size, size, 3))
  variables = jax.jit(functools.partial(model.init, train=True))({'params': KEY, 'dropout': KEY}, x)
  train_step = jax.jit(functools.partial(model.apply, train=True, mutable=['batch_stats']))
  (logits, aux), updates = train_step(variables, x, drop_path_prob=0.2, rngs={'dropout': KEY})
  assert logits.shape == (2, 3) and aux.shape == (2, 3)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables['batch_stats'],
                         updates['batch_stats'])
  assert all(jax.tree.leaves(changed))  # running statistics move in training
  logits_eval, aux_eval = jax.jit(model.apply)({**variables, **updates}, x)
  assert aux_eval is None and jnp.all(jnp.isfinite(logits_eval))


def test_drop_path_keeps_the_expectation():
  x = jnp.ones((20000, 1, 1, 1))
  y = eval_network.drop_path(x, jnp.float32(0.3), KEY)
  assert set(np.unique(np.asarray(y)).round(4)) == {0.0, np.float32(1 / 0.7).round(4)}
  assert abs(float(y.mean()) - 1.0) < 0.02


def test_supernet_hessian_products_are_exact(x64):
  """jvp-of-grad against central differences of the gradient in float64.

  The radius must be tiny: the supernet's gradient jumps wherever a ReLU or a max-pool window
  switches, and a radius of 1e-2..1e-6 crosses such jumps (the finite-difference error then
  grows like 1/r). That is the finite-difference mode's inaccuracy, not the product's.
  """
  model = explainer.Supernet(num_classes=5, channels=4, layers=1, impl='xla')
  init, apply = explainer.make_explainer(model)
  x = jax.random.normal(KEY, (4, 8, 8, 3))
  as64 = lambda t: jax.tree.map(lambda a: a.astype(jnp.float64), t)
  params = as64(jax.jit(init)(KEY, x))
  alphas = as64(explainer.init_alphas(jax.random.PRNGKey(1)))
  loss = lambda p, a: _loss(apply, p, a, x)
  v = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(3), a.shape, a.dtype), params)
  grad_a = jax.jit(jax.grad(loss, 1))
  hvp = jax.jit(lambda p, a, v: jax.jvp(lambda q: grad_a(q, a), (p,), (v,))[1])(params, alphas, v)
  r = 1e-8
  shifted = lambda s: grad_a(jax.tree.map(lambda a, b: a + s * r * b, params, v), alphas)
  fd = jax.tree.map(lambda p, m: (p - m) / (2 * r), shifted(1), shifted(-1))
  flat = lambda t: np.concatenate([np.ravel(l) for l in jax.tree.leaves(t)])
  assert np.linalg.norm(flat(fd) - flat(hvp)) <= 1e-6 * np.linalg.norm(flat(hvp))
