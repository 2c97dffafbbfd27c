"""The architecture hypergradient on tiny MLP explainer and audience models.

The reference is an independent numerical derivative of the whole unrolled objective O_A(A)
(central differences in float64), and an independently written DARTS-2nd formula.
"""

import functools

import jax.flatten_util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lease_jax import hypergrad as hg

D, H, K, B = 5, 6, 3, 8  # input dim, hidden, classes, batch


def explainer_apply(E, A, x):
  """A DARTS-like MLP: the hidden layer is a softmax(α)-weighted mix of three nonlinearities."""
  h = jnp.tanh(x @ E['w1'] + E['b1'])
  mix = jax.nn.softmax(A['alpha'])
  m = mix[0] * h + mix[1] * h ** 2 + mix[2] * jnp.sin(h)
  return m @ E['w2'] + A['bias']


def audience_apply(W, x):
  return jnp.tanh(x @ W['v1']) @ W['v2']


def sgd(lr=0.1):
  """The DARTS inner optimizer: SGD, momentum 0.9, weight decay (PyTorch's L2 form)."""
  return optax.chain(optax.add_decayed_weights(3e-4), optax.sgd(lr, momentum=0.9))


def make_problem(**kw):
  options = dict(explainer_apply=explainer_apply, audience_apply=audience_apply,
                 explainer_tx=sgd(), audience_tx=sgd(0.2),
                 explanation=hg.ExplanationOptions(epsilon=0.3, step_size=2.0, target='soft'),
                 gamma=1.0)
  options.update(kw)
  return hg.Problem(**options)


def make_inputs(dtype=jnp.float64, seed=0):
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), 16))
  normal = lambda shape, scale=1.0: scale * jax.random.normal(next(keys), shape, dtype)
  E = {'w1': normal((D, H), 0.6), 'b1': normal((H,), 0.1), 'w2': normal((H, K), 0.6)}
  A = {'alpha': normal((3,), 0.5), 'bias': normal((K,), 0.1)}
  W = {'v1': normal((D, H), 0.6), 'v2': normal((H, K), 0.6)}
  batch = lambda: {'image': normal((B, D)), 'label': jax.random.randint(next(keys), (B,), 0, K)}
  train, val = batch(), batch()
  problem = make_problem()
  # One real step first, so that the momentum buffers the virtual steps use are not zero.
  e_state = problem.explainer_tx.init(E)
  _, e_state = problem.explainer_tx.update(jax.grad(
      lambda e: hg.explainer_train_loss(problem, e, A, train)[0])(E), e_state, E)
  w_state = problem.audience_tx.init(W)
  _, w_state = problem.audience_tx.update({'v1': normal((D, H)), 'v2': normal((H, K))},
                                          w_state, W)
  delta0 = hg.random_start(next(keys), (B, D), 0.3, dtype)
  return dict(E=E, A=A, W=W, explainer_state=e_state, audience_state=w_state, train=train,
              val=val, delta0=delta0)


def objective(problem, inputs, A):
  (le, la), _ = hg.unrolled_objective(problem, A, inputs['E'], inputs['W'],
                                      inputs['explainer_state'], inputs['audience_state'],
                                      inputs['train'], inputs['val'], inputs['delta0'])
  return le + problem.gamma * la


def numerical_gradient(f, A, h=1e-5):
  """Central differences of f over every entry of the pytree A."""
  flat, unravel = jax.flatten_util.ravel_pytree(A)
  grad = np.zeros(flat.shape)
  for i in range(flat.size):
    e = np.zeros(flat.shape)
    e[i] = h
    grad[i] = (f(unravel(flat + e)) - f(unravel(flat - e))) / (2 * h)
  return unravel(jnp.asarray(grad))


def flat(tree):
  return np.asarray(jax.flatten_util.ravel_pytree(tree)[0])


def rel_err(a, b):
  a, b = flat(a), flat(b)
  return np.linalg.norm(a - b) / np.linalg.norm(b)


def run(mode, problem, inputs, **kw):
  return hg.hypergradient(mode, problem, **inputs, **kw)


OPTION_SETS = {
    'paper': {},
    'label_target_clip': dict(explanation=hg.ExplanationOptions(
        epsilon=0.3, step_size=2.0, target='label', clip=True)),
    'saliency': dict(audience_input='saliency'),
    'normalized_saliency_label': dict(audience_input='normalized_saliency',
                                      explanation=hg.ExplanationOptions(
                                          epsilon=0.3, step_size=2.0, target='label')),
    'gamma_half': dict(gamma=0.5),
}


@pytest.mark.parametrize('options', OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_exact_equals_numerical_derivative_of_the_unrolled_objective(x64, options):
  problem = make_problem(**options)
  inputs = make_inputs()
  exact = run('exact', problem, inputs)
  numeric = numerical_gradient(jax.jit(functools.partial(objective, problem, inputs)),
                               inputs['A'])
  assert rel_err(exact.total, numeric) <= 1e-6
  np.testing.assert_allclose(flat(exact.total), flat(exact.explainer) + flat(exact.audience),
                             rtol=1e-12, atol=1e-14)
  assert np.linalg.norm(flat(exact.audience)) > 1e-3 * np.linalg.norm(flat(exact.total))


@pytest.mark.parametrize('options', OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_hvp_equals_exact_float64(x64, options):
  problem = make_problem(**options)
  inputs = make_inputs()
  exact = run('exact', problem, inputs)
  hvp = run('hvp', problem, inputs)
  assert rel_err(hvp.total, exact.total) <= 1e-8
  assert rel_err(hvp.explainer, exact.explainer) <= 1e-8
  assert rel_err(hvp.audience, exact.audience) <= 1e-8
  unsplit = run('hvp', problem, inputs, split_terms=False)
  np.testing.assert_array_equal(flat(unsplit.total), flat(hvp.total))  # bitwise the same


def test_hvp_equals_exact_float32():
  problem = make_problem()
  inputs = make_inputs(jnp.float32)
  exact = run('exact', problem, inputs)
  hvp = run('hvp', problem, inputs)
  assert rel_err(hvp.total, exact.total) <= 1e-4


def test_finite_difference_error_shrinks_with_the_radius(x64):
  inputs = make_inputs()
  exact = run('exact', make_problem(), inputs).total
  errors = [rel_err(run('finite_difference', make_problem(fd_radius=r), inputs).total, exact)
            for r in (1e-1, 1e-2, 1e-3)]
  assert errors[0] > errors[1] > errors[2]
  assert errors[2] < 1e-5
  # Central differences: the error falls ~ r^2 (allow slack for the nested chain).
  assert errors[1] < errors[0] / 20


def test_first_order_is_the_validation_gradient_at_E(x64):
  problem = make_problem()
  inputs = make_inputs()
  result = run('first_order', problem, inputs)
  direct = jax.grad(lambda a: hg.cross_entropy(
      explainer_apply(inputs['E'], a, inputs['val']['image']), inputs['val']['label']))(
          inputs['A'])
  np.testing.assert_allclose(flat(result.total), flat(direct), rtol=1e-12)
  assert not np.any(flat(result.audience))


def test_gamma_zero_is_darts_second_order(x64):
  """An independent DARTS-2nd (architect.py's `_backward_step_unrolled`) vs finite_difference."""
  problem = make_problem(gamma=0.0, audience_apply=None, audience_tx=None)
  inputs = make_inputs()
  E, A, train, val = inputs['E'], inputs['A'], inputs['train'], inputs['val']
  xi, momentum, wd = 0.1, 0.9, 3e-4
  buf = inputs['explainer_state'][1][0].trace  # the momentum buffer
  loss = lambda e, a, batch: hg.cross_entropy(explainer_apply(e, a, batch['image']),
                                              batch['label'])
  g = jax.grad(loss)(E, A, train)
  E1 = jax.tree.map(lambda t, m, d: t - xi * (momentum * m + d + wd * t), E, buf, g)
  d_alpha, v = jax.grad(loss, (1, 0))(E1, A, val)
  R = 0.01 / optax.tree.norm(v)
  grad_plus = jax.grad(loss, 1)(jax.tree.map(lambda t, u: t + R * u, E, v), A, train)
  grad_minus = jax.grad(loss, 1)(jax.tree.map(lambda t, u: t - R * u, E, v), A, train)
  darts = jax.tree.map(lambda d, p, m: d - xi * (p - m) / (2 * R), d_alpha, grad_plus,
                       grad_minus)
  fd = run('finite_difference', problem, inputs)
  np.testing.assert_allclose(flat(fd.total), flat(darts), rtol=1e-9, atol=1e-12)
  exact = run('exact', problem, inputs)
  assert rel_err(fd.total, exact.total) < 1e-3
  assert not np.any(flat(exact.audience))


def test_soft_target_at_zero_start_does_not_move(x64):
  """Why δ0 is random: at δ = 0 the soft target equals the prediction, so ∇_δ O_Δ = 0."""
  problem = make_problem()
  inputs = make_inputs()
  zero = jnp.zeros_like(inputs['delta0'])
  delta = hg.explain(problem, inputs['E'], inputs['A'], inputs['train']['image'],
                     inputs['train']['label'], zero)
  # Zero up to rounding: p(x + 0) and the target are the same softmax, reached along two paths.
  assert float(jnp.max(jnp.abs(delta))) < 1e-13
  moved = hg.explain(problem, inputs['E'], inputs['A'], inputs['train']['image'],
                     inputs['train']['label'], inputs['delta0'])
  assert float(jnp.max(jnp.abs(moved - inputs['delta0']))) > 1e-4


def test_sign_step_has_no_audience_term(x64):
  problem = make_problem(explanation=hg.ExplanationOptions(epsilon=0.3, step_size=0.1,
                                                           sign=True))
  inputs = make_inputs()
  for mode in ('exact', 'hvp', 'finite_difference'):
    result = run(mode, problem, inputs)
    assert not np.any(flat(result.audience)), mode
  assert rel_err(run('hvp', problem, inputs).total, run('exact', problem, inputs).total) < 1e-8


def test_bad_mode_and_missing_start():
  problem = make_problem()
  inputs = make_inputs(jnp.float32)
  with pytest.raises(ValueError, match="mode 'second'"):
    run('second', problem, inputs)
  inputs.pop('delta0')
  with pytest.raises(ValueError, match='needs delta0 or a key'):
    run('hvp', problem, inputs)
  with pytest.raises(ValueError, match='gamma must be >= 0'):
    make_problem(gamma=-1.0)


def test_a_traced_radius_equals_the_problems_radius(x64):
  """`fd_radius=` (traced: one program for every radius) gives what `Problem.fd_radius` gives."""
  inputs = make_inputs()
  swept = jax.jit(lambda r: run('finite_difference', make_problem(), inputs, fd_radius=r).total)
  for radius in (1e-1, 1e-3):
    static = run('finite_difference', make_problem(fd_radius=radius), inputs).total
    assert rel_err(swept(radius), static) <= 1e-12


def test_the_radius_option_reaches_the_finite_difference():
  from lease_jax import builders, data
  from lease_jax.configs import tiny
  config = tiny.get_config()
  config.hypergrad.fd_radius = 0.37
  info, _, _ = data.load_sources(config.data)
  assert builders.build_search(config, info, 3).spec.problem.fd_radius == 0.37


# ---------------------------------------------------------------------------------------------
# K-step unrolls (issue 26): each mode against a float64 numerical derivative of a K-step
# objective written out here by hand (SGD with momentum and weight decay as PyTorch's, the
# ascent repeated), not through the library's unroll.

MOMENTUM, DECAY = 0.9, 3e-4


def _trace(opt_state):
  """The momentum buffer inside `sgd()`'s optax state."""
  return optax.tree_utils.tree_get(opt_state, 'trace')


def _sgd_steps(loss, params, trace, lr, steps):
  for _ in range(steps):
    grad = jax.grad(loss)(params)
    trace = jax.tree.map(lambda g, p, t: g + DECAY * p + MOMENTUM * t, grad, params, trace)
    params = jax.tree.map(lambda p, t: p - lr * t, params, trace)
  return params


def k_step_objective(problem, inputs, A, steps):
  """O_A of the (K, J, M)-step unrolled problem, by hand."""
  K, J, M = steps
  train, val = inputs['train'], inputs['val']
  E = _sgd_steps(lambda e: hg.explainer_train_loss(problem, e, A, train)[0], inputs['E'],
                 _trace(inputs['explainer_state']), 0.1, K)
  explainer_val = hg.cross_entropy(explainer_apply(E, A, val['image']), val['label'])
  delta = inputs['delta0']
  for _ in range(J):
    delta = delta + problem.explanation.step_size * jax.grad(hg.explanation_objective, 1)(
        problem, delta, E, A, train['image'], train['label'])
    if problem.explanation.clip:  # projected after every step
      delta = jnp.clip(delta, -problem.explanation.epsilon, problem.explanation.epsilon)
  W = _sgd_steps(lambda w: hg.audience_train_loss(problem, w, delta, train)[0], inputs['W'],
                 _trace(inputs['audience_state']), 0.2, M)
  audience_val = hg.cross_entropy(audience_apply(W, val['image']), val['label'])
  return explainer_val + problem.gamma * audience_val


STEP_SETS = [(1, 1, 1), (2, 1, 1), (3, 1, 1), (1, 2, 1), (1, 3, 1), (1, 1, 2), (1, 1, 3),
             (2, 3, 2)]


@pytest.mark.parametrize('steps, options', [(s, 'paper') for s in STEP_SETS] +
                         [((2, 2, 2), 'label_target_clip')],
                         ids=lambda x: 'K%d_J%d_M%d' % x if isinstance(x, tuple) else x)
def test_every_mode_equals_the_numerical_derivative_of_the_k_step_objective(x64, steps, options):
  problem = make_problem(explainer_steps=steps[0], explanation_steps=steps[1],
                         audience_steps=steps[2], fd_radius=1e-5, **OPTION_SETS[options])
  inputs = make_inputs()
  numeric = numerical_gradient(jax.jit(lambda a: k_step_objective(problem, inputs, a, steps)),
                               inputs['A'])
  assert float(objective(problem, inputs, inputs['A'])) == pytest.approx(
      float(k_step_objective(problem, inputs, inputs['A'], steps)), rel=1e-12)
  exact, hvp = run('exact', problem, inputs), run('hvp', problem, inputs)
  assert rel_err(exact.total, numeric) <= 1e-6
  assert rel_err(hvp.total, numeric) <= 1e-6
  assert rel_err(hvp.explainer, exact.explainer) <= 1e-8
  assert rel_err(hvp.audience, exact.audience) <= 1e-8
  assert rel_err(run('finite_difference', problem, inputs).total, numeric) <= 1e-6


def test_more_steps_change_the_hypergradient(x64):
  """The unroll is not a no-op: K = 3 moves E, δ and W further, and the hypergradient with it."""
  inputs = make_inputs()
  one = run('exact', make_problem(), inputs).total
  three = run('exact', make_problem(explainer_steps=3, explanation_steps=3, audience_steps=3),
              inputs).total
  assert rel_err(three, one) > 1e-2


def test_step_counts_below_one_are_refused():
  with pytest.raises(ValueError, match='explanation_steps must be an integer >= 1'):
    make_problem(explanation_steps=0)
