"""The LeaSE stages and the architecture hypergradient ∇_A O_A, in four modes.

Notation (DESIGN.md §1). Explainer `f(x; E, A)`, audience `g(x; W)`, train batch `(x, t)`, val
batch `(xv, tv)`, random start `δ0`. One search iteration's look-ahead is

  Eq. 6   E'(A)   = E + U_E(∇_E CE(f(x; E, A), t))                      explainer_virtual_step
  Eq. 7   δ'(E',A) = P(δ0 + ξ_Δ ∇_δ O_Δ(δ0; E', A))                      explain
          O_Δ(δ)  = Σ_i CE(softmax f(x_i + δ_i; E', A), target_i)
  Eq. 8   W'(δ')  = W + U_W(∇_W CE(g(a(δ', x); W), t))                   audience_virtual_step
  Eq. 9   O_A(A)  = CE(f(xv; E', A), tv) + γ · CE(g(xv; W'), tv)         unrolled_objective

where `U(grad) = tx.update(grad, opt_state, params)[0]` is the optimizer's real update (for SGD with
momentum μ and weight decay λ: `-ξ (μ·buf + grad + λ·params)`, DARTS's `_compute_unrolled_model`),
`P` is the identity or the projection onto the ε-box (`clip`), and `a(δ', x)` is the audience's
input (`δ' ⊙ x` in the paper). The paper's Eq. 7 writes a descent step while its Eq. 2 maximises
O_Δ; the ascent is right (the official code ascends). With the soft target and `δ0 = 0` the
gradient of O_Δ is exactly zero (p(x + 0) = target), hence the random start.

`hypergradient(mode, ...)` returns ∇_A O_A split into the explainer term (the first CE) and the
audience term (γ · the second):

  exact              `jax.vjp` of O_A(A) through the whole unrolled chain: one program; the
                     reference.
  hvp                the chain rule of the paper (Eqs. 10, 12-17) with every mixed second
                     derivative an exact Hessian-vector product, `jax.jvp` of `jax.grad`. Each
                     piece is its own jitted, first-order-sized program (`static_argnames=
                     'problem'`); called inside an outer `jax.jit` they inline into one.
  finite_difference  the same chain, each product by central differences (Eq. 11):
                     `H v ≈ (∇ f(b + r v) - ∇ f(b - r v)) / 2r`, `r = radius / ‖v‖`; the ± calls
                     share one compiled gradient.
  first_order        `∇_A CE(f(xv; E, A), tv)` (DARTS-1st). The audience has no first-order path
                     to A: its term is zero.

The chain (hvp and finite_difference), with `vjp_U(v)` the transpose of the optimizer update's
derivative in its gradient argument (exactly `-ξ v` for SGD):

  v_W = ∇_W' CE(g(xv; W'), tv);        u_δ = (∂δ'-map)ᵀ ∇_δ' <∇_W CE(g(a(δ', x); W), t), vjp_U_W(v_W)>
  (u_E, u_A) = ξ_Δ ∇_(E',A) <∇_δ O_Δ(δ0; E', A), u_δ>                   (zero with `sign`)
  v_E = ∇_E' CE(f(xv; E', A), tv),     d_A = ∇_A CE(f(xv; E', A), tv)
  explainer term = d_A + ∇_A <∇_E CE(f(x; E, A), t), vjp_U_E(v_E)>
  audience term  = γ (u_A + ∇_A <∇_E CE(f(x; E, A), t), vjp_U_E(u_E)>)

`u_A` is the direct dependence of δ' on A (the explanation is computed by the supernet, which
takes A): the paper's chain omits it; the exact gradient has it, so this chain has it too.

Everything here is model-agnostic: pure apply functions and optax transforms, so the tests run
the same code on tiny MLPs in float64 against numerical derivatives of O_A.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lease_jax import precompile

Array = jax.Array
PyTree = Any
Batch = Mapping[str, Array]  # {'image': [B, H, W, C] (or [B, D]), 'label': [B] int}

MODES = ('exact', 'hvp', 'finite_difference', 'first_order')
TARGETS = ('soft', 'label')
STARTS = ('random', 'zero')
AUDIENCE_INPUTS = ('product', 'saliency', 'normalized_saliency')


@dataclasses.dataclass(frozen=True)
class ExplanationOptions:
  """How the explainer explains (Eq. 7).

  Attributes:
    epsilon: the perturbation bound ε, in the units of the (normalised) input: a float, or one
      float per input channel (ε = 8/255 pixels divided by each channel's std).
    step_size: ξ_Δ, the ascent step on O_Δ (a raw-gradient step: O_Δ sums over the batch).
    target: 'soft' (the explainer's own prediction, the paper) or 'label' (official code).
    clip: project δ' onto the ε-box.
    sign: take a sign step of `step_size · ε`, detached (the official code's, an FGSM step):
      then ∂δ'/∂E' = 0.
    start: δ0 'random' (U(-ε, ε), the paper) or 'zero' (then δ' is the input gradient itself,
      a classic saliency map; with the soft target its gradient is exactly zero: refused).
  """

  epsilon: float | tuple[float, ...] = 8 / 255
  step_size: float = 1.0
  target: str = 'soft'
  clip: bool = False
  sign: bool = False
  start: str = 'random'

  def __post_init__(self):
    if self.target not in TARGETS:
      raise ValueError(f'explanation target {self.target!r}; accepted: {", ".join(TARGETS)}')
    if self.start not in STARTS:
      raise ValueError(f'explanation start {self.start!r}; accepted: {", ".join(STARTS)}')
    if self.start == 'zero' and self.target == 'soft':
      raise ValueError("explanation start 'zero' with target 'soft': the ascent gradient at "
                       "δ0 = 0 is exactly zero, so δ' = 0; use start 'random' or target 'label'")


@dataclasses.dataclass(frozen=True)
class Problem:
  """The static description of one LeaSE problem (hashable: a jit static argument).

  Attributes:
    explainer_apply: `(E, A, x) -> logits`.
    audience_apply: `(W, x) -> logits`.
    explainer_tx: the explainer's optimizer without gradient clipping (the virtual step, Eq. 6,
      uses its update exactly; the real step clips first).
    audience_tx: the audience's optimizer, likewise.
    explanation: `ExplanationOptions`.
    gamma: γ, the weight of the audience's validation loss. 0 removes stages 2-3 (DARTS-2nd).
    audience_input: how the audience reweighs the pixels by the explanation (`importance`):
      'product' (`δ' ⊙ x`, the paper), 'saliency' (`clip(|δ'|/ε, 0, 1) ⊙ x`) or
      'normalized_saliency' (`|δ'| / max|δ'| ⊙ x`, the maximum over each example).
    fd_radius: the finite-difference radius numerator (`r = fd_radius / ‖v‖`, DARTS: 0.01).
  """

  explainer_apply: Callable[..., Array]
  audience_apply: Callable[..., Array] | None
  explainer_tx: optax.GradientTransformation
  audience_tx: optax.GradientTransformation | None
  explanation: ExplanationOptions = ExplanationOptions()
  gamma: float = 1.0
  audience_input: str = 'product'
  fd_radius: float = 0.01

  def __post_init__(self):
    if self.audience_input not in AUDIENCE_INPUTS:
      raise ValueError(f'audience_input {self.audience_input!r}; accepted: '
                       f'{", ".join(AUDIENCE_INPUTS)}')
    if self.gamma < 0:
      raise ValueError(f'gamma must be >= 0, got {self.gamma}')
    if self.gamma > 0 and (self.audience_apply is None or self.audience_tx is None):
      raise ValueError('gamma > 0 needs an audience (audience_apply and audience_tx)')

  @property
  def has_audience(self) -> bool:
    return self.gamma > 0


class Hypergradient(NamedTuple):
  """∇_A O_A and its two terms (each shaped like A). The terms are None where not computed."""

  total: PyTree
  explainer: PyTree | None
  audience: PyTree | None
  metrics: dict[str, Array]


# ---------------------------------------------------------------------------------------------
# Small pieces.


def cross_entropy(logits: Array, labels: Array) -> Array:
  """Mean cross-entropy with integer labels (`nn.CrossEntropyLoss`)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# The glue between the pieces is jitted too: in the pieces driver every eager operation on
# every leaf would be its own tiny XLA program (~490 of them, ~40 s of a cold first step).
# Inside an outer `jax.jit` these inline.


@precompile.jit
def accuracy(logits: Array, labels: Array) -> Array:
  return jnp.mean(jnp.argmax(logits, -1) == labels)


def tree_dot(a: PyTree, b: PyTree) -> Array:
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@precompile.jit
def tree_norm(a: PyTree) -> Array:
  return optax.tree.norm(a)


@precompile.jit
def tree_add(a, b):
  return jax.tree.map(jnp.add, a, b)


@precompile.jit
def tree_sub(a, b):
  return jax.tree.map(jnp.subtract, a, b)


@precompile.jit
def tree_zeros_like(a):
  return jax.tree.map(jnp.zeros_like, a)


@precompile.jit
def tree_scale(s, a):
  return jax.tree.map(lambda x: s * x, a)


def _updated(tx: optax.GradientTransformation, grads, opt_state, params):
  updates, _ = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates)


def update_vjp(tx: optax.GradientTransformation, grads, opt_state, params, cotangent):
  """`(∂ params'/∂ grads)ᵀ cotangent` for `params' = params + tx.update(grads, ...)`.

  Exactly `-lr · cotangent` for SGD (+ momentum, + weight decay); general for any optax transform.
  """
  _, pullback = jax.vjp(lambda g: _updated(tx, g, opt_state, params), grads)
  return pullback(cotangent)[0]


def random_start(key: Array, shape, epsilon, dtype=jnp.float32) -> Array:
  """δ0 ~ U(-ε, ε) per input element (ε per channel broadcasts over the last axis)."""
  eps = jnp.asarray(epsilon, dtype)
  return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * eps


@precompile.jit(static_argnames=('shape', 'explanation', 'dtype'))
def explanation_start(key: Array, shape, explanation: ExplanationOptions,
                      dtype=jnp.float32) -> Array:
  """δ0 of Eq. 7: `random_start` or zeros (`explanation.start`)."""
  if explanation.start == 'zero':
    return jnp.zeros(shape, dtype)
  return random_start(key, shape, explanation.epsilon, dtype)


# ---------------------------------------------------------------------------------------------
# The stages (Eqs. 6-9), each a pure function.


def explainer_train_loss(problem: Problem, E, A, batch: Batch):
  logits = problem.explainer_apply(E, A, batch['image'])
  return cross_entropy(logits, batch['label']), logits


def explainer_virtual_step(problem: Problem, E, A, opt_state, batch: Batch):
  """Eq. 6: `E' = E + U_E(∇_E CE(f(x; E, A), t))`. Returns (E', grad, loss, logits)."""
  (loss, logits), grads = jax.value_and_grad(
      lambda e: explainer_train_loss(problem, e, A, batch), has_aux=True)(E)
  return _updated(problem.explainer_tx, grads, opt_state, E), grads, loss, logits


def explanation_objective(problem: Problem, delta, E, A, images, labels):
  """O_Δ(δ) = Σ_i CE(softmax f(x_i + δ_i; E, A), target_i) (Eq. 7's objective, to maximise)."""
  logits = problem.explainer_apply(E, A, images + delta)
  if problem.explanation.target == 'soft':
    target = jax.nn.softmax(problem.explainer_apply(E, A, images))
    return jnp.sum(optax.softmax_cross_entropy(logits, target))
  return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def _project(problem: Problem, delta_raw):
  if problem.explanation.clip:
    eps = jnp.asarray(problem.explanation.epsilon, delta_raw.dtype)
    return jnp.clip(delta_raw, -eps, eps)
  return delta_raw


def explanation_ascent(problem: Problem, E, A, images, labels, delta0):
  """The unprojected step of Eq. 7 (with the ascent sign): `δ0 + ξ_Δ ∇_δ O_Δ(δ0; E, A)`.

  With `sign`, the step is `ξ_Δ ε sign(∇_δ O_Δ)` (ξ_Δ in units of ε), detached (the official
  code's).
  """
  grad = jax.grad(explanation_objective, argnums=1)(problem, delta0, E, A, images, labels)
  if problem.explanation.sign:
    eps = jnp.asarray(problem.explanation.epsilon, grad.dtype)
    grad = jax.lax.stop_gradient(eps * jnp.sign(grad))
  return delta0 + problem.explanation.step_size * grad


def explain(problem: Problem, E, A, images, labels, delta0):
  """Eq. 7: `δ' = P(δ0 + ξ_Δ ∇_δ O_Δ(δ0; E, A))`, P the optional projection onto the ε-box."""
  return _project(problem, explanation_ascent(problem, E, A, images, labels, delta0))


def importance(problem: Problem, delta):
  """The per-pixel weights m with which the audience sees an image, `a(δ', x) = m ⊙ x`.

  The paper's intent (section 3): pixels perturbed more are more important, and the audience
  reweighs the pixels by that importance.
    product              m = δ'                      (the paper's Eq. 8, literally)
    saliency             m = clip(|δ'| / ε, 0, 1)    (saturates where |δ'| ≥ ε)
    normalized_saliency  m = |δ'| / max_example |δ'| (scale-free: in [0, 1], 1 at the most
                                                      perturbed element of each example)
  """
  if problem.audience_input == 'saliency':
    eps = jnp.asarray(problem.explanation.epsilon, delta.dtype)
    return jnp.clip(jnp.abs(delta) / eps, 0.0, 1.0)
  if problem.audience_input == 'normalized_saliency':
    magnitude = jnp.abs(delta)
    axes = tuple(range(1, delta.ndim))
    peak = jnp.max(magnitude, axis=axes, keepdims=True)
    return magnitude / jnp.maximum(peak, jnp.finfo(delta.dtype).tiny)
  return delta


def audience_input(problem: Problem, delta, images):
  """What the audience learns from: `a(δ', x) = importance(δ') ⊙ x` (Eq. 8's input)."""
  return importance(problem, delta) * images


def audience_train_loss(problem: Problem, W, delta, batch: Batch):
  logits = problem.audience_apply(W, audience_input(problem, delta, batch['image']))
  return cross_entropy(logits, batch['label']), logits


def audience_virtual_step(problem: Problem, W, opt_state, delta, batch: Batch):
  """Eq. 8: `W' = W + U_W(∇_W CE(g(a(δ', x); W), t))`. Returns (W', grad, loss, logits)."""
  (loss, logits), grads = jax.value_and_grad(
      lambda w: audience_train_loss(problem, w, delta, batch), has_aux=True)(W)
  return _updated(problem.audience_tx, grads, opt_state, W), grads, loss, logits


def unrolled_objective(problem: Problem, A, E, W, explainer_state, audience_state,
                       train: Batch, val: Batch, delta0):
  """Eq. 9's two terms as functions of A through the whole unrolled chain.

  Returns ((L_e^val, L_a^val), metrics); O_A = L_e^val + γ L_a^val.
  """
  E1, _, _, _ = explainer_virtual_step(problem, E, A, explainer_state, train)
  val_logits = problem.explainer_apply(E1, A, val['image'])
  explainer_val = cross_entropy(val_logits, val['label'])
  metrics = {'explainer_val_loss': explainer_val,
             'explainer_val_acc': accuracy(val_logits, val['label'])}
  if not problem.has_audience:
    return (explainer_val, jnp.zeros_like(explainer_val)), metrics
  delta = explain(problem, E1, A, train['image'], train['label'], delta0)
  W1, _, _, _ = audience_virtual_step(problem, W, audience_state, delta, train)
  audience_logits = problem.audience_apply(W1, val['image'])
  audience_val = cross_entropy(audience_logits, val['label'])
  metrics.update(audience_val_loss=audience_val,
                 audience_val_acc=accuracy(audience_logits, val['label']),
                 delta_abs_mean=jnp.mean(jnp.abs(delta)),
                 delta_step_abs_mean=jnp.mean(jnp.abs(delta - delta0)))
  return (explainer_val, audience_val), metrics


# ---------------------------------------------------------------------------------------------
# Jitted pieces, each first-order sized. `problem` is static: a piece compiles once per problem
# and shape and inlines when called under an outer jit. Each first-order program serves every
# use with its shapes: `explainer_grads` is the virtual step's gradient, the validation gradient
# (E' and A), the finite-difference gradient in A and the real step's gradient; `audience_grads`
# likewise for W. Compilation, not arithmetic, is the cost that matters at small sizes.

_piece = precompile.jit(static_argnames=('problem',))


@_piece
def explainer_grads(problem: Problem, E, A, batch: Batch):
  """(CE(f(x; E, A), t), logits, ∇_E CE, ∇_A CE)."""
  def loss(e, a):
    logits = problem.explainer_apply(e, a, batch['image'])
    return cross_entropy(logits, batch['label']), logits
  (value, logits), (grad_e, grad_a) = jax.value_and_grad(loss, (0, 1), has_aux=True)(E, A)
  return value, logits, grad_e, grad_a


@_piece
def audience_grads(problem: Problem, W, inputs, labels):
  """(CE(g(inputs; W), t), logits, ∇_W CE) for the audience's own inputs."""
  def loss(w):
    logits = problem.audience_apply(w, inputs)
    return cross_entropy(logits, labels), logits
  (value, logits), grad = jax.value_and_grad(loss, has_aux=True)(W)
  return value, logits, grad


@precompile.jit(static_argnames=('tx',))
def apply_update(tx: optax.GradientTransformation, grads, opt_state, params):
  """`params + tx.update(grads)`, with the new optimizer state."""
  updates, new_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), new_state


@precompile.jit(static_argnames=('tx',))
def _update_vjp(tx, grads, opt_state, params, cotangent):
  return update_vjp(tx, grads, opt_state, params, cotangent)


@_piece
def ascent_step(problem: Problem, E, A, images, labels, delta0):
  """`explanation_ascent` as its own program (the chain's and the real step's δ')."""
  return explanation_ascent(problem, E, A, images, labels, delta0)


@_piece
def audience_inputs(problem: Problem, delta_raw, images):
  """(δ' = P(δ_raw), the audience's input a(δ', x))."""
  delta = _project(problem, delta_raw)
  return delta, audience_input(problem, delta, images)


@_piece
def _explain_vjp(problem: Problem, delta_raw, cotangent):
  """Pulls a cotangent of δ' back through the projection P to the raw step."""
  return jax.vjp(lambda d: _project(problem, d), delta_raw)[1](cotangent)[0]


@_piece
def _exact(problem: Problem, A, E, W, explainer_state, audience_state, train, val, delta0):
  (losses, pullback, metrics) = jax.vjp(
      lambda a: unrolled_objective(problem, a, E, W, explainer_state, audience_state, train, val,
                                   delta0), A, has_aux=True)
  one = jnp.ones_like(losses[0])
  zero = jnp.zeros_like(losses[0])
  total = pullback((one, jnp.full_like(one, problem.gamma)))[0]
  explainer_term = pullback((one, zero))[0]
  return total, explainer_term, metrics


# The three mixed second derivatives, each `∇_a <∇_b f(a, b), v>` = d/dε ∇_a f(a, b + ε v):
# forward-over-reverse (hvp), or central differences of a first-order gradient (Eq. 11).


def _grad_delta_audience(problem: Problem, W, delta, train):
  return jax.grad(lambda d: audience_train_loss(problem, W, d, train)[0])(delta)


@_piece
def _audience_product_hvp(problem: Problem, W, delta, train, w_W):
  """`∇_δ <∇_W CE(g(a(δ, x); W), t), w_W>` as the jvp in W of ∇_δ CE."""
  return jax.jvp(lambda w: _grad_delta_audience(problem, w, delta, train), (W,), (w_W,))[1]


@_piece
def _audience_grad_delta(problem: Problem, W, delta, train):
  return _grad_delta_audience(problem, W, delta, train)


def _explanation_grads_fn(problem: Problem, delta0, E, A, train):
  return jax.grad(explanation_objective, argnums=(2, 3))(problem, delta0, E, A, train['image'],
                                                         train['label'])


@_piece
def _explanation_product_hvp(problem: Problem, delta0, E, A, train, u_delta):
  """`∇_(E,A) <∇_δ O_Δ(δ0; E, A), u_δ>` as the jvp in δ of ∇_(E,A) O_Δ."""
  return jax.jvp(lambda d: _explanation_grads_fn(problem, d, E, A, train), (delta0,),
                 (u_delta,))[1]


@_piece
def _explanation_grads(problem: Problem, delta0, E, A, train):
  return _explanation_grads_fn(problem, delta0, E, A, train)


@_piece
def _implicit_product_hvp(problem: Problem, E, A, train, w_E):
  """`∇_A <∇_E CE(f(x; E, A), t), w_E>` as the jvp in E of ∇_A CE (DARTS's Eq. 7 product)."""
  grad_a = lambda e: jax.grad(lambda a: explainer_train_loss(problem, e, a, train)[0])(A)
  return jax.jvp(grad_a, (E,), (w_E,))[1]


@precompile.jit
def _displaced(base, direction, radius_numerator):
  """(base + r v, base - r v, r) with `r = radius / ‖v‖`."""
  r = radius_numerator / jnp.maximum(tree_norm(direction), jnp.finfo(jnp.float32).tiny)
  return (jax.tree.map(lambda b, v: b + r * v, base, direction),
          jax.tree.map(lambda b, v: b - r * v, base, direction), r)


@precompile.jit
def _difference_quotient(plus, minus, r):
  return jax.tree.map(lambda p, m: (p - m) / (2 * r), plus, minus)


def _central_difference(grad_fn, base, direction, radius_numerator):
  """`(grad_fn(base + r v) - grad_fn(base - r v)) / 2r` with `r = radius / ‖v‖` (Eq. 11)."""
  ahead, behind, r = _displaced(base, direction, radius_numerator)
  return _difference_quotient(grad_fn(ahead), grad_fn(behind), r)


def _implicit_product(problem, mode, E, A, train, w_E, radius):
  if mode == 'hvp':
    return _implicit_product_hvp(problem, E, A, train, w_E)
  return _central_difference(lambda e: explainer_grads(problem, e, A, train)[3], E, w_E, radius)


@precompile.jit
def _delta_sizes(delta, delta0):
  return {'delta_abs_mean': jnp.mean(jnp.abs(delta)),
          'delta_step_abs_mean': jnp.mean(jnp.abs(delta - delta0))}


# ---------------------------------------------------------------------------------------------
# The public function.


def hypergradient(mode: str, problem: Problem, *, E, A, W, explainer_state, audience_state,
                  train: Batch, val: Batch, delta0: Array | None = None,
                  key: Array | None = None, split_terms: bool = True,
                  fd_radius: Array | float | None = None) -> Hypergradient:
  """∇_A O_A of one LeaSE iteration (Eq. 9), by `mode` (see the module docstring).

  Args:
    mode: 'exact' | 'hvp' | 'finite_difference' | 'first_order'.
    problem: apply functions, optimizers, explanation options, γ (`Problem`).
    E, A, W: explainer weights, architecture, audience weights (pytrees; W unused when γ = 0).
    explainer_state, audience_state: the optimizers' states (the virtual steps use them exactly:
      momentum buffers, step counts, learning-rate schedules).
    train, val: `{'image', 'label'}` batches.
    delta0: the random start δ0 (same shape as the train images); or give `key` to draw it.
    split_terms: in 'hvp' / 'finite_difference', also compute the explainer term (one more
      implicit product; the audience term is the total minus it). The total is computed the same
      way either way. 'exact' always splits (a second backward pass).
    fd_radius: 'finite_difference' only: the radius numerator, instead of `problem.fd_radius`;
      it may be a traced scalar, so that one compiled program serves every radius (the
      radius sweeps of `experiments/fd_error_curve.py`).

  Returns:
    `Hypergradient(total, explainer, audience, metrics)`, each gradient shaped like A.
  """
  if mode not in MODES:
    raise ValueError(f'hypergradient mode {mode!r}; accepted: {", ".join(MODES)}')
  if mode == 'first_order':
    loss, logits, _, grad = explainer_grads(problem, E, A, val)
    metrics = {'explainer_val_loss': loss, 'explainer_val_acc': accuracy(logits, val['label'])}
    return Hypergradient(grad, grad, tree_zeros_like(grad), metrics)

  if problem.has_audience and delta0 is None:
    if key is None:
      raise ValueError('hypergradient needs delta0 or a key to draw it')
    delta0 = explanation_start(key, train['image'].shape, problem.explanation,
                          train['image'].dtype)

  radius = problem.fd_radius if fd_radius is None else fd_radius
  if mode == 'exact':
    total, explainer_term, metrics = _exact(problem, A, E, W, explainer_state, audience_state,
                                            train, val, delta0)
    return Hypergradient(total, explainer_term, tree_sub(total, explainer_term), metrics)

  # hvp / finite_difference: the paper's chain, piece by piece.
  _, _, g_E, _ = explainer_grads(problem, E, A, train)
  E1, _ = apply_update(problem.explainer_tx, g_E, explainer_state, E)  # Eq. 6
  val_loss, val_logits, v_E, d_A = explainer_grads(problem, E1, A, val)
  metrics = {'explainer_val_loss': val_loss,
             'explainer_val_acc': accuracy(val_logits, val['label'])}
  u_E = u_A = None
  if problem.has_audience:
    delta_raw = ascent_step(problem, E1, A, train['image'], train['label'], delta0)
    delta, inputs = audience_inputs(problem, delta_raw, train['image'])  # Eq. 7
    _, _, g_W = audience_grads(problem, W, inputs, train['label'])
    W1, _ = apply_update(problem.audience_tx, g_W, audience_state, W)  # Eq. 8
    a_loss, a_logits, v_W = audience_grads(problem, W1, val['image'], val['label'])
    metrics.update(audience_val_loss=a_loss, audience_val_acc=accuracy(a_logits, val['label']),
                   **_delta_sizes(delta, delta0))
    w_W = _update_vjp(problem.audience_tx, g_W, audience_state, W, v_W)
    if mode == 'hvp':
      u_delta = _audience_product_hvp(problem, W, delta, train, w_W)
    else:
      u_delta = _central_difference(lambda w: _audience_grad_delta(problem, w, delta, train), W,
                                    w_W, radius)
    u_delta = tree_scale(problem.gamma, _explain_vjp(problem, delta_raw, u_delta))
    if problem.explanation.sign:
      # The detached sign step: δ' does not depend on E' or A.
      u_E = tree_zeros_like(E1)
      u_A = tree_zeros_like(A)
    else:
      if mode == 'hvp':
        u_E, u_A = _explanation_product_hvp(problem, delta0, E1, A, train, u_delta)
      else:
        u_E, u_A = _central_difference(
            lambda d: _explanation_grads(problem, d, E1, A, train), delta0, u_delta, radius)
      step = problem.explanation.step_size
      u_E, u_A = tree_scale(step, u_E), tree_scale(step, u_A)

  # The total always comes from one chain, whatever `split_terms`: a run's result must not
  # depend on which steps logged the split (bitwise-identical resumes).
  c_E = v_E if u_E is None else tree_add(v_E, u_E)
  w_E = _update_vjp(problem.explainer_tx, g_E, explainer_state, E, c_E)
  total = tree_add(d_A, _implicit_product(problem, mode, E, A, train, w_E, radius))
  if u_A is not None:
    total = tree_add(total, u_A)
  if not problem.has_audience:
    return Hypergradient(total, total, tree_zeros_like(total), metrics)
  if not split_terms:
    return Hypergradient(total, None, None, metrics)
  w_v = _update_vjp(problem.explainer_tx, g_E, explainer_state, E, v_E)
  explainer_term = tree_add(d_A, _implicit_product(problem, mode, E, A, train, w_v, radius))
  return Hypergradient(total, explainer_term, tree_sub(total, explainer_term), metrics)
