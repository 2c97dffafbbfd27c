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


# ---------------------------------------------------------------------------------------------
# Implicit hypergradients (issue 26). The reference: with damping λ, the implicit hypergradient
# is exactly the derivative of O_A through the solution maps of the proximal inner problems
#   E*(A)     = argmin_E  L_tr(E, A)  + λ/2 ‖E - c_E‖²
#   δ*(E, A)  = argmax_δ  O_Δ(δ; E, A) - λ/2 ‖δ - c_δ‖²
#   W*(δ)     = argmin_W  L_a(W; δ)   + λ/2 ‖W - c_W‖²
# with each centre c chosen so that the library's inner iterate (E_K, δ_J, W_M) is the
# problem's stationary point at the current A. For λ large enough each problem is strongly
# convex (concave), so Newton's method solves it to machine precision, and central
# differences of O_A(A) through those solves are the answer in closed form (up to O(h²)).


def _ravel(tree):
  return jax.flatten_util.ravel_pytree(tree)


def _newton(objective, start, steps=8):
  """The stationary point of a strongly convex `objective` of a flat vector, from `start`."""
  x = start
  for _ in range(steps):
    x = x - jnp.linalg.solve(jax.hessian(objective)(x), jax.grad(objective)(x))
  return x


def _proximal_objective(problem, inputs, damping):
  """O_A(A) through the proximal solution maps above (centred at the library's iterates)."""
  train, val = inputs['train'], inputs['val']
  A0 = inputs['A']
  E_K = hg.explainer_unroll(problem, inputs['E'], A0, inputs['explainer_state'], train)
  delta_J = hg.explain(problem, E_K, A0, train['image'], train['label'], inputs['delta0'])
  W_M = hg.audience_unroll(problem, inputs['W'], inputs['audience_state'], delta_J, train)
  flat_E, unravel_E = _ravel(E_K)
  flat_W, unravel_W = _ravel(W_M)
  shape_delta = delta_J.shape
  l_tr = lambda e, a: hg.explainer_train_loss(problem, unravel_E(e), a, train)[0]
  o_delta = lambda d, e, a: hg.explanation_objective(problem, d.reshape(shape_delta),
                                                     unravel_E(e), a, train['image'],
                                                     train['label'])
  l_a = lambda w, d: hg.audience_train_loss(problem, unravel_W(w), d.reshape(shape_delta),
                                            train)[0]
  # Centres making the iterates stationary at A0.
  c_E = flat_E + jax.grad(l_tr)(flat_E, A0) / damping
  c_delta = delta_J.ravel() - jax.grad(o_delta)(delta_J.ravel(), flat_E, A0) / damping
  c_W = flat_W + jax.grad(l_a)(flat_W, delta_J.ravel()) / damping

  def objective(A):
    e = _newton(lambda e: l_tr(e, A) + damping / 2 * jnp.sum((e - c_E) ** 2), flat_E)
    explainer_val = hg.cross_entropy(explainer_apply(unravel_E(e), A, val['image']),
                                     val['label'])
    d = _newton(lambda d: -o_delta(d, e, A) + damping / 2 * jnp.sum((d - c_delta) ** 2),
                delta_J.ravel())
    w = _newton(lambda w: l_a(w, d) + damping / 2 * jnp.sum((w - c_W) ** 2), flat_W)
    audience_val = hg.cross_entropy(audience_apply(unravel_W(w), val['image']), val['label'])
    return explainer_val + problem.gamma * audience_val

  return objective


def _implicit_problem(damping, solver='cg', iterations=60, scale=0.025, **kw):
  return make_problem(implicit=hg.ImplicitOptions(solver, iterations, damping, scale), **kw)


def test_solvers_converge_to_the_inverse_on_a_quadratic(x64):
  rng = np.random.default_rng(0)
  q = rng.normal(size=(6, 6))
  matrix = jnp.asarray(q @ q.T + 0.5 * np.eye(6))
  b = {'x': jnp.asarray(rng.normal(size=6))}
  exact = np.linalg.solve(np.asarray(matrix) + 0.1 * np.eye(6), np.asarray(b['x']))
  matvec = lambda v: {'x': matrix @ v['x']}
  error = lambda options: np.linalg.norm(hg.solve(matvec, b, options)['x'] - exact)
  cg = [error(hg.ImplicitOptions('cg', n, 0.1)) for n in (1, 3, 6)]
  assert cg[0] > cg[1] > cg[2] and cg[2] < 1e-10 * np.linalg.norm(exact)
  scale = 1 / float(np.linalg.eigvalsh(np.asarray(matrix)).max() + 0.1)
  neumann = [error(hg.ImplicitOptions('neumann', n, 0.1, scale)) for n in (1, 5, 20, 2000)]
  assert neumann[0] > neumann[1] > neumann[2] > neumann[3]
  assert neumann[3] < 1e-8 * np.linalg.norm(exact)
  one_term = hg.solve(matvec, b, hg.ImplicitOptions('neumann', 1, 0.1, scale))['x']
  np.testing.assert_allclose(one_term, scale * b['x'])  # one term: α b


@pytest.mark.parametrize('gamma', [0.0, 1.0], ids=['darts_bilevel', 'lease'])
def test_implicit_equals_the_derivative_through_the_solution_maps(x64, gamma):
  damping = 1.0  # the three Hessians' lowest eigenvalues here: -0.29, -0.33 (of -H_δδ), -0.09
  problem = _implicit_problem(damping, gamma=gamma, iterations=60)
  inputs = make_inputs()
  reference = numerical_gradient(jax.jit(_proximal_objective(problem, inputs, damping)),
                                 inputs['A'], h=1e-5)
  implicit = run('implicit', problem, inputs)
  assert rel_err(implicit.total, reference) <= 1e-6
  if gamma:  # the audience term alone against the reference's (its γ = 1 minus its γ = 0)
    darts = _implicit_problem(damping, gamma=0.0, iterations=60)
    reference_darts = numerical_gradient(jax.jit(_proximal_objective(darts, inputs, damping)),
                                         inputs['A'], h=1e-5)
    audience = jax.tree.map(jnp.subtract, reference, reference_darts)
    assert np.linalg.norm(flat(audience)) > 1e-3
    assert rel_err(implicit.audience, audience) <= 1e-4
  # Neumann converges to the same as its terms grow (α below 2 / ‖H + λ‖, ‖H + λ‖ <= 1.46).
  neumann = [rel_err(run('implicit', _implicit_problem(damping, 'neumann', n, 0.5,
                                                       gamma=gamma), inputs).total, reference)
             for n in (1, 5, 20, 200)]
  assert neumann[0] > neumann[1] > neumann[2] > neumann[3] and neumann[3] < 1e-6, neumann


def test_one_neumann_term_is_the_one_step_unroll_to_first_order(x64):
  """With plain SGD (no momentum, no weight decay) of rate ξ, γ = 0: implicit with one
  Neumann term of scale ξ is `d_A - ξ H_AE(E') v_E`, the one-step unroll `d_A - ξ H_AE(E) v_E`
  but for where the mixed derivative is taken (E' = E - ξ g): they differ by O(ξ²)."""
  inputs = make_inputs()
  differences = []
  for rate in (1e-2, 1e-3):
    plain = optax.sgd(rate)
    kw = dict(gamma=0.0, explainer_tx=plain)
    state = dict(inputs, explainer_state=plain.init(inputs['E']))
    unrolled = run('hvp', make_problem(**kw), state).total
    one_term = run('implicit', _implicit_problem(0.0, 'neumann', 1, rate, **kw), state).total
    differences.append(np.linalg.norm(flat(one_term) - flat(unrolled)))
  assert differences[1] < differences[0] / 50  # ~ξ²: a 10x smaller ξ, ~100x closer
