"""The LeaSE iteration on the real supernet + ResNet-18 (the tiny config)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import search_helpers

from lease_jax import builders, data, hypergrad, lease
from lease_jax.configs import tiny

# `exact` runs on the real networks in test_parallel.py (its iteration on four devices, against
# hvp's on one, to float32 rounding) and in test_benchmark.py's gpu_check (its hypergradient on
# one device, against hvp's); compiled here too, it would be the suite's third exact program and
# check nothing more.
MODES = ('first_order', 'hvp', 'finite_difference')


@pytest.fixture(scope='module')
def setup():
  config = tiny.get_config()
  config.explainer.learning_rate = 0.005  # small, so a fixed batch is not overfitted at once
  config.audience.learning_rate = 0.005
  config.arch.learning_rate = 0.03
  info, train_source, _ = data.load_sources(config.data)
  train, val = builders.search_streams(config, info, train_source)
  batches = (builders.to_device(train.batch(0)), builders.to_device(val.batch(0)))
  searches = {}
  for mode in MODES:
    config.search.mode = mode
    searches[mode] = builders.build_search(config, info, train.steps_per_epoch)
  # Every mode shares one problem (and so one set of compiled pieces).
  problem = searches['hvp'].spec.problem
  for mode in MODES:
    searches[mode] = dataclasses.replace(
        searches[mode], spec=dataclasses.replace(searches[mode].spec, problem=problem))
  return config, searches, batches


def test_one_iteration_per_mode(setup):
  config, searches, (train, val) = setup
  for mode in MODES:
    search = searches[mode]
    state = search.init_state(config.seed)
    alphas0 = jax.tree.map(np.asarray, state.alphas)
    # The thin driver for every mode: the real steps' pieces are shared by all three (the
    # one-program iteration is tested in test_one_program_iteration_equals_the_pieces).
    step = lease.make_step(search.spec, jit_whole=False)
    new_state, metrics = step(state, train, val)
    assert int(new_state.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values()), (mode, metrics)
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), new_state.alphas,
                         alphas0)
    assert max(jax.tree.leaves(moved)) > 0, mode
    for key in ('explainer_train_loss', 'explainer_val_loss', 'audience_train_loss',
                'alpha_grad_norm', 'learning_rate'):
      assert key in metrics, (mode, key)


def test_hypergradient_is_a_descent_direction_for_O_A(setup):
  config, searches, (train, val) = setup
  search = searches['hvp']
  state = search.init_state(config.seed)
  problem = search.spec.problem
  delta0 = hypergrad.random_start(jax.random.PRNGKey(7), train['image'].shape,
                                  problem.explanation.epsilon)
  kw = dict(E=state.explainer, W=state.audience, explainer_state=state.explainer_opt_state,
            audience_state=state.audience_opt_state, train=train, val=val, delta0=delta0)

  @jax.jit
  def objective(alphas):
    (e, a), _ = hypergrad.unrolled_objective(
        problem, alphas, kw['E'], kw['W'], kw['explainer_state'], kw['audience_state'], train,
        val, delta0)
    return e + problem.gamma * a

  grad = hypergrad.hypergradient('hvp', problem, A=state.alphas, **kw).total
  before = float(objective(state.alphas))
  # A step of 0.001 in α (A itself is ~1e-3): the decrease is the first-order prediction
  # step·‖g‖² up to curvature. Longer steps cross kinks of ReLU / max-pool: on this batch a
  # step of 0.005 decreases the audience term 30x more than predicted, while 1e-4 to 2e-3 give
  # 0.7-1.0 of the prediction (measured).
  norm = builders.flat_norm(grad)
  step = 0.001 / norm
  after = float(objective(jax.tree.map(lambda a, g: a - step * g, state.alphas, grad)))
  predicted = step * norm**2
  assert 0.25 * predicted < before - after < 2.0 * predicted, (before - after, predicted)


def test_explainer_term_decreases_over_iterations_on_a_fixed_batch(setup):
  """Iterating on one batch (validating on the batch it trains on), the explainer's term of O_A
  falls. The audience's term is not expected to: the audience learns from δ' ⊙ x and is
  validated on clean x (DESIGN §1), so on a fixed batch its loss wanders (measured 5.2 -> 5.5
  for the sum over 4 iterations of the tiny config) — the hypergradient's descent property is
  tested above, on O_A as a whole."""
  config, searches, (train, val) = setup
  search = searches['hvp']
  state = search.init_state(config.seed)
  step = lease.make_step(search.spec, jit_whole=False)
  losses = []
  for _ in range(4):
    state, metrics = step(state, train, train)  # validate on the batch it trains on
    losses.append(float(metrics['explainer_val_loss']))
  assert losses[-1] < losses[0], losses


def test_one_program_iteration_equals_the_pieces(setup):
  """The GPU/TPU defaults (`impl='auto'` → XLA's kernels, the whole iteration as one jitted
  program) give the pieces driver's iteration (CPU's default driver) at tiny size: the same new
  α and E and the same metrics (float32). The driver is the same for every mode (the mode picks
  the hypergradient), so the first-order mode's program checks it; the hvp hypergradient as one
  program is checked against the exact one, and the hvp iteration as one program runs, in
  test_benchmark.py's gpu_check: a one-program hvp iteration here would be the suite's second
  (~1.5 min of compilation) and check nothing more. The two kernel implementations are compared
  elsewhere: the supernet's values and gradients in test_models.py, each sliced kernel against
  XLA's to third order (hvp included) in test_kernels.py; here both drivers use XLA's, so the
  pieces are the ones `test_one_iteration_per_mode` compiled."""
  config, searches, (train, val) = setup
  search = searches['first_order']
  # Gaussian images: digits' flat background ties max-pool windows, where a fused program and
  # the pieces may take different (equally valid) subgradients.
  noise = lambda batch, key: dict(batch, image=jax.random.normal(key, batch['image'].shape))
  batches = noise(train, jax.random.PRNGKey(1)), noise(val, jax.random.PRNGKey(2))
  # A by plain SGD with rate 1: the new α is α − ∇_A, so the hypergradients are compared
  # (Adam's first step is lr·sign(∇_A), which flips on float32 noise where ∇_A ≈ 0).
  spec = dataclasses.replace(search.spec, arch_tx=optax.sgd(1.0))
  results = {}
  for jit_whole in (True, False):
    state = search.init_state(config.seed)
    state = lease.init_state(spec, state.explainer, state.alphas, state.audience, state.rng)
    state, metrics = lease.make_step(spec, jit_whole)(state, *batches)
    results[jit_whole] = jax.device_get((state.alphas, state.explainer, metrics))
  (alphas, weights, metrics), (alphas_cpu, weights_cpu, metrics_cpu) = results.values()
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  for new, cpu, tolerance in ((alphas, alphas_cpu, 1e-4), (weights, weights_cpu, 1e-4)):
    error = np.linalg.norm(flat(new) - flat(cpu)) / np.linalg.norm(flat(cpu))
    assert error <= tolerance
  for key in metrics_cpu:
    np.testing.assert_allclose(metrics[key], metrics_cpu[key], rtol=1e-3, atol=1e-6, err_msg=key)


def test_smooth_supernet_finite_difference_converges_to_hvp_in_float64():
  """With every kink smoothed (GELU, average pooling) and float64, the paper's finite difference
  on the real supernet + ResNet-18 converges to the exact product as r shrinks, ~r² (central
  differences), in both terms. Wrong products (a missing term, a wrong transpose) would leave a
  floor that no radius removes."""
  config = tiny.get_config()
  config.explainer.impl = 'smooth'
  with jax.enable_x64(True):
    search, state, train, val = search_helpers.float64_search(config)
    problem = search.spec.problem
    inputs = search_helpers.hypergradient_inputs(search, state, train, val)
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
    # The pieces driver: the two modes share their first-order programs, and every radius is
    # one traced argument of the same compiled programs.
    hvp = hypergrad.hypergradient('hvp', problem, **inputs)
    fd = lambda r: hypergrad.hypergradient('finite_difference', problem, fd_radius=jnp.float64(r),
                                           **inputs)
    by_radius = [fd(r) for r in (1e-1, 1e-2, 1e-3)]  # one finite difference per radius
    for term in ('explainer', 'audience'):
      exact = flat(getattr(hvp, term))
      errors = [np.linalg.norm(flat(getattr(grads, term)) - exact) / np.linalg.norm(exact)
                for grads in by_radius]
      assert errors[0] > 20 * errors[1] > 400 * errors[2], (term, errors)
      assert errors[2] < 1e-3, (term, errors)  # measured: audience 0.70, 0.013, 1.3e-4
