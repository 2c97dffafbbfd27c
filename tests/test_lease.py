"""The LeaSE iteration on the real supernet + ResNet-18 (the tiny config)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lease_jax import builders, data, hypergrad, lease
from lease_jax.configs import tiny

MODES = ('first_order', 'hvp', 'finite_difference', 'exact')


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
  import dataclasses
  for mode in MODES:
    searches[mode] = dataclasses.replace(
        searches[mode], spec=dataclasses.replace(searches[mode].spec, problem=problem))
  return config, searches, batches


def test_one_iteration_in_every_mode(setup):
  config, searches, (train, val) = setup
  results = {}
  for mode in MODES:
    search = searches[mode]
    state = search.init_state(config.seed)
    alphas0 = jax.tree.map(np.asarray, state.alphas)
    step = lease.make_step(search.spec, jit_whole=mode in ('exact', 'first_order'))
    new_state, metrics = step(state, train, val)
    assert int(new_state.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values()), (mode, metrics)
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), new_state.alphas,
                         alphas0)
    assert max(jax.tree.leaves(moved)) > 0, mode
    for key in ('explainer_train_loss', 'explainer_val_loss', 'audience_train_loss',
                'alpha_grad_norm', 'learning_rate'):
      assert key in metrics, (mode, key)
    results[mode] = metrics
  # The exact single program and the chain of jitted hvp pieces agree (float32).
  np.testing.assert_allclose(float(results['hvp']['alpha_grad_norm']),
                             float(results['exact']['alpha_grad_norm']), rtol=2e-3)
  np.testing.assert_allclose(float(results['hvp']['alpha_grad_norm_audience']),
                             float(results['exact']['alpha_grad_norm_audience']), rtol=2e-3)


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
