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

MODES = ('exact', 'hvp', 'finite_difference', 'first_order', 'implicit')
SOLVERS = ('cg', 'neumann')
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
class ImplicitOptions:
  """The implicit mode's linear solves `x ≈ (H + λ I)⁻¹ b` (`solve`).

  Attributes:
    solver: 'cg' (conjugate gradients) or 'neumann' (`α Σ_{i<n} (I - α (H + λ I))^i b`).
    iterations: n, CG's iterations or the Neumann series' terms (1: `α b`).
    damping: λ, added to every Hessian (CG needs H + λ I positive definite).
    scale: α of the Neumann series (converges while α ‖H + λ I‖ < 2; the inner learning rate
      makes one term the one-step unroll's product).
  """

  solver: str = 'cg'
  iterations: int = 10
  damping: float = 0.0
  scale: float = 0.025

  def __post_init__(self):
    if self.solver not in SOLVERS:
      raise ValueError(f'implicit solver {self.solver!r}; accepted: {", ".join(SOLVERS)}')
    if not isinstance(self.iterations, int) or self.iterations < 1:
      raise ValueError(f'implicit iterations must be an integer >= 1, got {self.iterations}')


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
    explainer_steps, explanation_steps, audience_steps: how many steps each inner problem is
      unrolled (Eqs. 6, 7, 8; the paper's and DARTS's 1). The explainer's and the audience's
      steps repeat their optimizer's update on the same train batch, carrying its state
      (momentum); the explanation's repeat the ascent step from the last δ, each projected
      (`clip`), PGD-like. See "K-step unrolls" below.
  """

  explainer_apply: Callable[..., Array]
  audience_apply: Callable[..., Array] | None
  explainer_tx: optax.GradientTransformation
  audience_tx: optax.GradientTransformation | None
  explanation: ExplanationOptions = ExplanationOptions()
  gamma: float = 1.0
  audience_input: str = 'product'
  fd_radius: float = 0.01
  explainer_steps: int = 1
  explanation_steps: int = 1
  audience_steps: int = 1
  implicit: ImplicitOptions = ImplicitOptions()

  def __post_init__(self):
    for name in ('explainer_steps', 'explanation_steps', 'audience_steps'):
      if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
        raise ValueError(f'{name} must be an integer >= 1, got {getattr(self, name)}')
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

  @property
  def one_step(self) -> bool:
    """Every inner problem unrolled one step (the paper's, DARTS's)."""
    return self.explainer_steps == self.explanation_steps == self.audience_steps == 1


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


def _optimizer_unroll(tx: optax.GradientTransformation, loss, params, opt_state, steps: int):
  """`steps` updates of `params` by `tx` on `loss(params)`, the optimizer's state carried:
  `p_{k+1} = p_k + U(∇ loss(p_k), s_k)`. A `lax.scan` whose step is rematerialised, so the
  backward pass keeps one (params, state) per step, not every step's activations."""
  def step(carry, _):
    p, s = carry
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, updates), s), None
  (params, _), _ = jax.lax.scan(jax.checkpoint(step), (params, opt_state), None, length=steps)
  return params


def explainer_unroll(problem: Problem, E, A, opt_state, batch: Batch):
  """Eq. 6 unrolled `problem.explainer_steps` times on the batch: E_K(A)."""
  if problem.explainer_steps == 1:
    return explainer_virtual_step(problem, E, A, opt_state, batch)[0]
  return _optimizer_unroll(problem.explainer_tx,
                           lambda e: explainer_train_loss(problem, e, A, batch)[0], E, opt_state,
                           problem.explainer_steps)


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
  """Eq. 7: `δ' = P(δ0 + ξ_Δ ∇_δ O_Δ(δ0; E, A))`, P the optional projection onto the ε-box;
  with `explanation_steps` J > 1 the step repeats from the last δ, J times (PGD-like)."""
  delta = delta0
  for _ in range(problem.explanation_steps):
    delta = _project(problem, explanation_ascent(problem, E, A, images, labels, delta))
  return delta


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


def audience_unroll(problem: Problem, W, opt_state, delta, batch: Batch):
  """Eq. 8 unrolled `problem.audience_steps` times on the batch: W_M(δ')."""
  if problem.audience_steps == 1:
    return audience_virtual_step(problem, W, opt_state, delta, batch)[0]
  return _optimizer_unroll(problem.audience_tx,
                           lambda w: audience_train_loss(problem, w, delta, batch)[0], W,
                           opt_state, problem.audience_steps)


def unrolled_objective(problem: Problem, A, E, W, explainer_state, audience_state,
                       train: Batch, val: Batch, delta0):
  """Eq. 9's two terms as functions of A through the whole unrolled chain.

  Returns ((L_e^val, L_a^val), metrics); O_A = L_e^val + γ L_a^val.
  """
  E1 = explainer_unroll(problem, E, A, explainer_state, train)
  val_logits = problem.explainer_apply(E1, A, val['image'])
  explainer_val = cross_entropy(val_logits, val['label'])
  metrics = {'explainer_val_loss': explainer_val,
             'explainer_val_acc': accuracy(val_logits, val['label'])}
  if not problem.has_audience:
    return (explainer_val, jnp.zeros_like(explainer_val)), metrics
  delta = explain(problem, E1, A, train['image'], train['label'], delta0)
  W1 = audience_unroll(problem, W, audience_state, delta, train)
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


# ---------------------------------------------------------------------------------------------
# K-step unrolls: the chain by reverse accumulation through the steps.
#
# An optimizer's step `(p', s') = (p + U(g, s, p), S(g, s, p))` with `g = ∇_p L(p, q)` (q: what
# the loss also depends on: A for the explainer, δ' for the audience) pulls a cotangent
# (p̄', s̄') back as
#   (ḡ, s̄, p̄_direct) = vjp of the update in (g, s, p)                  `_step_vjp` (first order)
#   (p̄, q̄) += (H_pp ḡ, H_qp ḡ) = d/dε (∇_p L, ∇_q L)(p + ε ḡ, q)         `_loss_product`
# the second line one forward-over-reverse product (hvp) or a central difference of the
# first-order gradient (finite_difference). The explanation's step `δ_{j+1} = P(δ_j + ξ ∇_δ O)`
# pulls δ̄_{j+1} back through P to ū, then δ̄_j = ū + ξ H_δδ ū and (Ē, Ā) += ξ (H_Eδ ū, H_Aδ ū),
# likewise one product in the δ direction. Memory grows with K: every step's (p, s, g) is kept.


def _float_leaves(tree):
  return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]


def _with_float_leaves(tree, floats):
  leaves, treedef = jax.tree.flatten(tree)
  floats = iter(floats)
  return treedef.unflatten([next(floats) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
                            else x for x in leaves])


@precompile.jit(static_argnames=('tx',))
def _step_vjp(tx, grads, opt_state, params, params_bar, state_bar):
  """(ḡ, s̄, p̄_direct) of one optimizer step (the cotangent of its state as its float leaves;
  integer leaves, a step count, carry none)."""
  def step(g, floats, p):
    new_p, new_s = apply_update(tx, g, _with_float_leaves(opt_state, floats), p)
    return new_p, _float_leaves(new_s)
  _, pullback = jax.vjp(step, grads, _float_leaves(opt_state), params)
  return pullback((params_bar, state_bar))


@precompile.jit
def _float_zeros(opt_state):
  return [jnp.zeros_like(x) for x in _float_leaves(opt_state)]


def _explainer_full_grads(problem, E, A, train):
  _, _, grad_e, grad_a = explainer_grads(problem, E, A, train)
  return grad_e, grad_a


@_piece
def _explainer_product_hvp(problem: Problem, E, A, train, direction):
  """(H_EE v, H_AE v) of CE(f(x; E, A), t): the jvp in E of (∇_E CE, ∇_A CE)."""
  return jax.jvp(lambda e: _explainer_full_grads(problem, e, A, train), (E,), (direction,))[1]


def _audience_full_grads(problem, W, delta, train):
  return jax.grad(lambda w, d: audience_train_loss(problem, w, d, train)[0], (0, 1))(W, delta)


@_piece
def _audience_product_full_hvp(problem: Problem, W, delta, train, direction):
  """(H_WW v, H_δW v) of the audience's train loss: the jvp in W of (∇_W, ∇_δ)."""
  return jax.jvp(lambda w: _audience_full_grads(problem, w, delta, train), (W,), (direction,))[1]


@_piece
def _audience_full_grads_piece(problem: Problem, W, delta, train):
  return _audience_full_grads(problem, W, delta, train)


def _explanation_all_grads(problem, delta, E, A, train):
  return jax.grad(explanation_objective, argnums=(1, 2, 3))(problem, delta, E, A, train['image'],
                                                            train['label'])


@_piece
def _explanation_product_full_hvp(problem: Problem, delta, E, A, train, direction):
  """(H_δδ u, H_Eδ u, H_Aδ u) of O_Δ: the jvp in δ of (∇_δ, ∇_E, ∇_A) O_Δ."""
  return jax.jvp(lambda d: _explanation_all_grads(problem, d, E, A, train), (delta,),
                 (direction,))[1]


@_piece
def _explanation_all_grads_piece(problem: Problem, delta, E, A, train):
  return _explanation_all_grads(problem, delta, E, A, train)


def _product(mode, hvp_fn, grad_fn, base, direction, radius):
  """d/dε grad_fn(base + ε v): exactly (`hvp_fn`) or by central differences (Eq. 11)."""
  if mode == 'hvp':
    return hvp_fn(direction)
  return _central_difference(grad_fn, base, direction, radius)


def _unroll_trajectory(tx, grad_fn, params, opt_state, steps):
  """The forward of an optimizer unroll, kept for the reverse pass: [(p_k, s_k, g_k)], p_K."""
  trajectory = []
  for _ in range(steps):
    grads = grad_fn(params)
    trajectory.append((params, opt_state, grads))
    params, opt_state = apply_update(tx, grads, opt_state, params)
  return trajectory, params


def _unroll_reverse(tx, trajectory, params_bar, product):
  """Pulls p̄_K back through an unroll; returns (p̄_0, q̄): `product(p_k, ḡ)` gives the
  (H_pp ḡ, H_qp ḡ) pair of step k."""
  state_bar = _float_zeros(trajectory[-1][1])
  q_bar = None
  for params, opt_state, grads in reversed(trajectory):
    g_bar, state_bar, p_direct = _step_vjp(tx, grads, opt_state, params, params_bar, state_bar)
    h_p, h_q = product(params, g_bar)
    params_bar = tree_add(p_direct, h_p)
    q_bar = h_q if q_bar is None else tree_add(q_bar, h_q)
  return params_bar, q_bar


def explanation_raw(problem: Problem, E, A, images, labels, delta0):
  """The last unprojected ascent step of a J-step explanation (its J - 1 earlier steps
  projected): `audience_inputs` projects it. At J = 1, `ascent_step` itself."""
  delta = delta0
  for _ in range(problem.explanation_steps - 1):
    delta, _ = audience_inputs(problem, ascent_step(problem, E, A, images, labels, delta), images)
  return ascent_step(problem, E, A, images, labels, delta)


@dataclasses.dataclass
class _Iterates:
  """The forward of the chain: the inner iterates E_K, δ_J, W_M, what the reverse pass needs
  of the way there, and the validation gradients at them."""

  E_K: PyTree
  trajectory_E: list
  v_E: PyTree
  d_A: PyTree
  metrics: dict
  deltas: list | None = None  # δ_j entering step j
  raws: list | None = None  # step j's unprojected result
  delta: Array | None = None  # δ_J, projected
  W_M: PyTree | None = None
  trajectory_W: list | None = None
  v_W: PyTree | None = None


def _inner_iterates(problem, E, A, W, explainer_state, audience_state, train, val, delta0):
  e_grads = lambda e: explainer_grads(problem, e, A, train)[2]
  trajectory_E, E_K = _unroll_trajectory(problem.explainer_tx, e_grads, E, explainer_state,
                                         problem.explainer_steps)
  val_loss, val_logits, v_E, d_A = explainer_grads(problem, E_K, A, val)
  out = _Iterates(E_K, trajectory_E, v_E, d_A, {
      'explainer_val_loss': val_loss, 'explainer_val_acc': accuracy(val_logits, val['label'])})
  if not problem.has_audience:
    return out
  images, labels = train['image'], train['label']
  out.deltas, out.raws, delta = [], [], delta0
  for _ in range(problem.explanation_steps):
    raw = ascent_step(problem, E_K, A, images, labels, delta)
    out.deltas.append(delta)
    out.raws.append(raw)
    delta, inputs = audience_inputs(problem, raw, images)
  out.delta = delta
  w_grads = lambda w: audience_grads(problem, w, inputs, labels)[2]
  out.trajectory_W, out.W_M = _unroll_trajectory(problem.audience_tx, w_grads, W,
                                                 audience_state, problem.audience_steps)
  a_loss, a_logits, out.v_W = audience_grads(problem, out.W_M, val['image'], val['label'])
  out.metrics.update(audience_val_loss=a_loss,
                     audience_val_acc=accuracy(a_logits, val['label']),
                     **_delta_sizes(delta, delta0))
  return out


def _multistep_chain(mode, problem, E, A, W, explainer_state, audience_state, train, val,
                     delta0, split_terms, radius):
  """hvp / finite_difference for K-step unrolls (any of the three counts > 1)."""
  it = _inner_iterates(problem, E, A, W, explainer_state, audience_state, train, val, delta0)
  E_K, trajectory_E, v_E, d_A, metrics = it.E_K, it.trajectory_E, it.v_E, it.d_A, it.metrics
  explainer_product = lambda e, v: _product(
      mode, lambda d: _explainer_product_hvp(problem, e, A, train, d),
      lambda x: explainer_grads(problem, x, A, train)[2:], e, v, radius)
  u_E = u_A = None
  if problem.has_audience:
    delta, deltas, raws, trajectory_W, v_W = it.delta, it.deltas, it.raws, it.trajectory_W, it.v_W
    audience_product = lambda w, v: _product(
        mode, lambda d: _audience_product_full_hvp(problem, w, delta, train, d),
        lambda x: _audience_full_grads_piece(problem, x, delta, train), w, v, radius)
    _, u_delta = _unroll_reverse(problem.audience_tx, trajectory_W, v_W, audience_product)
    u_delta = tree_scale(problem.gamma, u_delta)
    u_E, u_A = tree_zeros_like(E_K), tree_zeros_like(A)
    step = problem.explanation.step_size
    for delta_j, raw in zip(reversed(deltas), reversed(raws)):
      u = _explain_vjp(problem, raw, u_delta)
      if problem.explanation.sign:  # a detached step: δ_{j+1} = δ_j + constant
        u_delta = u
        continue
      h_delta, h_E, h_A = _product(
          mode, lambda d: _explanation_product_full_hvp(problem, delta_j, E_K, A, train, d),
          lambda x: _explanation_all_grads_piece(problem, x, E_K, A, train), delta_j, u, radius)
      u_delta = tree_add(u, tree_scale(step, h_delta))
      u_E, u_A = tree_add(u_E, tree_scale(step, h_E)), tree_add(u_A, tree_scale(step, h_A))
  c_E = v_E if u_E is None else tree_add(v_E, u_E)
  _, implicit = _unroll_reverse(problem.explainer_tx, trajectory_E, c_E, explainer_product)
  total = tree_add(d_A, implicit)
  if u_A is not None:
    total = tree_add(total, u_A)
  if not problem.has_audience:
    return Hypergradient(total, total, tree_zeros_like(total), metrics)
  if not split_terms:
    return Hypergradient(total, None, None, metrics)
  _, implicit_v = _unroll_reverse(problem.explainer_tx, trajectory_E, v_E, explainer_product)
  explainer_term = tree_add(d_A, implicit_v)
  return Hypergradient(total, explainer_term, tree_sub(total, explainer_term), metrics)


# ---------------------------------------------------------------------------------------------
# Implicit hypergradients: the implicit function theorem at the inner iterates, level by level.


@precompile.jit
def _tree_vdot(a, b):
  return tree_dot(a, b)


@precompile.jit
def _cg_update(x, r, p, Ap, rs, done):
  """One conjugate-gradient update, truncated: at a direction of non-positive curvature
  (H + λ I not positive definite there) or a zero residual the iterate stops where it is
  (no host sync: `done` is carried)."""
  curvature = tree_dot(p, Ap)
  done = done | (curvature <= 0) | (rs <= 0)
  alpha = jnp.where(done, 0.0, rs / jnp.where(done, 1.0, curvature))
  x = jax.tree.map(lambda a, b: a + alpha * b, x, p)
  r = jax.tree.map(lambda a, b: a - alpha * b, r, Ap)
  rs_new = jnp.where(done, rs, tree_dot(r, r))
  beta = jnp.where(done, 0.0, rs_new / jnp.where(done, 1.0, rs))
  p = jax.tree.map(lambda a, b: a + beta * b, r, p)
  return x, r, p, rs_new, done


@precompile.jit
def _neumann_update(term, total, Ht, scale):
  term = jax.tree.map(lambda t, h: t - scale * h, term, Ht)
  return term, tree_add(total, term)


def solve(matvec, b, options: ImplicitOptions):
  """`x ≈ (H + λ I)⁻¹ b` for a symmetric H given by its products `matvec(v) = H v`.

    cg       `iterations` conjugate-gradient steps from x = 0 (exact after dim(b) steps when
             H + λ I is positive definite; truncated at the first direction of non-positive
             curvature, where CG would diverge);
    neumann  `α Σ_{i<n} (I - α (H + λ I))^i b`, n = `iterations` (n = 1: `α b`).
  """
  damping = options.damping
  op = lambda v: tree_add(matvec(v), tree_scale(damping, v)) if damping else matvec(v)
  if options.solver == 'neumann':
    term = total = b
    for _ in range(options.iterations - 1):
      term, total = _neumann_update(term, total, op(term), options.scale)
    return tree_scale(options.scale, total)
  x, r, p = tree_zeros_like(b), b, b
  rs, done = _tree_vdot(r, r), jnp.asarray(False)
  for _ in range(options.iterations):
    x, r, p, rs, done = _cg_update(x, r, p, op(p), rs, done)
  return x


def _implicit(problem: Problem, E, A, W, explainer_state, audience_state, train, val, delta0,
              split_terms):
  """∇_A O_A by the implicit function theorem at the inner iterates E_K, δ_J, W_M:

    W*(δ):   ∇_W L_a = 0   ->  δ̄ = -γ H_δW (H_WW + λ)⁻¹ v_W
    δ*(E,A): ∇_δ O_Δ = 0   ->  (Ē, Ā_δ) = (H_Eδ, H_Aδ) (-H_δδ + λ)⁻¹ δ̄   (a maximiser: -H_δδ)
    E*(A):   ∇_E L_e = 0   ->  total = d_A - H_AE (H_EE + λ)⁻¹ (v_E + Ē) + Ā_δ

  v_E, d_A, v_W the validation gradients at the iterates; every product an exact
  Hessian-vector product, every inverse by `solve`. The explanation's projection (`clip`) is
  not modelled (the unconstrained stationarity), and a detached `sign` step has no path to A.
  """
  it = _inner_iterates(problem, E, A, W, explainer_state, audience_state, train, val, delta0)
  options = problem.implicit
  products_E = lambda v: _explainer_product_hvp(problem, it.E_K, A, train, v)
  u_E = u_A = None
  if problem.has_audience:
    products_W = lambda v: _audience_product_full_hvp(problem, it.W_M, it.delta, train, v)
    q = solve(lambda v: products_W(v)[0], it.v_W, options)
    u_delta = tree_scale(-problem.gamma, products_W(q)[1])
    if not problem.explanation.sign:
      products_delta = lambda u: _explanation_product_full_hvp(problem, it.delta, it.E_K, A,
                                                               train, u)
      y = solve(lambda u: tree_scale(-1.0, products_delta(u)[0]), u_delta, options)
      _, u_E, u_A = products_delta(y)
  c_E = it.v_E if u_E is None else tree_add(it.v_E, u_E)
  total = tree_sub(it.d_A, products_E(solve(lambda v: products_E(v)[0], c_E, options))[1])
  if u_A is not None:
    total = tree_add(total, u_A)
  if not problem.has_audience:
    return Hypergradient(total, total, tree_zeros_like(total), it.metrics)
  if not split_terms:
    return Hypergradient(total, None, None, it.metrics)
  explainer_term = tree_sub(it.d_A, products_E(solve(lambda v: products_E(v)[0], it.v_E,
                                                     options))[1])
  return Hypergradient(total, explainer_term, tree_sub(total, explainer_term), it.metrics)


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
  if mode == 'implicit':
    return _implicit(problem, E, A, W, explainer_state, audience_state, train, val, delta0,
                     split_terms)
  if mode != 'exact' and not problem.one_step:
    return _multistep_chain(mode, problem, E, A, W, explainer_state, audience_state, train, val,
                            delta0, split_terms, radius)
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
