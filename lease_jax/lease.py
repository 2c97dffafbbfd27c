"""One LeaSE search iteration (DESIGN.md §1, stages 1-5) as a pure function of the search state.

  state, metrics = search_step(spec, state, train_batch, val_batch)

1-4. The architecture hypergradient ∇_A O_A (`hypergrad.hypergradient`, in `spec.mode`).
5.   DARTS's order, on the same train batch: A takes an Adam step; E takes a real optimizer step
     (gradient-norm clipped) with the new A; a fresh explanation δ' is computed with the new E
     (a new random start); W takes a real step on δ' ⊙ x (clipped).

Warm-up (`update_arch=False`, PC-DARTS's first epochs): no hypergradient and no architecture
step — A and its optimizer state stay bit for bit — while E and W take their real steps; the
step's metrics are the validation loss and accuracy of E itself (DARTS-1st's validation pass).

The step's randomness is `fold_in(state.rng, state.step)`, so a step depends only on the state
and the batches: a resumed run repeats an uninterrupted one exactly.

`make_step(spec, jit_whole=...)` gives the callable a training loop uses: with `jit_whole` the
iteration is one jitted program (tiny and small configs; accelerators); otherwise a thin Python
driver over jitted pieces, each first-order sized (the hypergradient's pieces, then one program
for the real steps), which is what compiles at full size on CPU (DESIGN.md §6).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from lease_jax import hypergrad as hg
from lease_jax import optim, precompile

PyTree = Any


@flax.struct.dataclass
class SearchState:
  """Everything a search needs to continue: every pytree, every optimizer state, step, RNG."""

  step: jax.Array
  explainer: PyTree  # E
  alphas: PyTree  # A: the space's α (and β where the base has them), any pytree
  audience: PyTree  # W ({} when γ = 0)
  explainer_opt_state: PyTree
  audience_opt_state: PyTree
  alphas_opt_state: PyTree
  rng: jax.Array  # raw uint32 key; step keys are fold_in(rng, step)


@dataclasses.dataclass(frozen=True)
class SearchSpec:
  """The static part of a search (hashable: a jit static argument).

  Attributes:
    problem: apply functions, inner optimizers, explanation options, γ (`hypergrad.Problem`).
    arch_tx: the architecture optimizer.
    mode: the hypergradient mode ('exact', 'hvp', 'finite_difference', 'first_order').
    explainer_clip, audience_clip: gradient-norm clipping of the real steps (<= 0: off).
    learning_rate: the weights' schedule `step -> lr` (for the metrics).
  """

  problem: hg.Problem
  arch_tx: optax.GradientTransformation
  mode: str = 'hvp'
  explainer_clip: float = 5.0
  audience_clip: float = 5.0
  learning_rate: Callable[[Any], Any] | None = None

  def __post_init__(self):
    if self.mode not in hg.MODES:
      raise ValueError(f'search mode {self.mode!r}; accepted: {", ".join(hg.MODES)}')


def init_state(spec: SearchSpec, explainer: PyTree, alphas: PyTree, audience: PyTree,
               rng: jax.Array) -> SearchState:
  """The state at step 0, from initial parameters (the optimizers' states are fresh)."""
  problem = spec.problem
  audience = audience if problem.has_audience else {}
  return SearchState(
      step=jnp.zeros((), jnp.int32),
      explainer=explainer, alphas=alphas, audience=audience,
      explainer_opt_state=problem.explainer_tx.init(explainer),
      audience_opt_state=problem.audience_tx.init(audience) if problem.has_audience else {},
      alphas_opt_state=spec.arch_tx.init(alphas),
      rng=rng)


@precompile.jit
def step_keys(state: SearchState) -> tuple[jax.Array, jax.Array]:
  """(key of the virtual explanation's δ0, key of the real explanation's δ0) for this step."""
  key = jax.random.fold_in(state.rng, state.step)
  return tuple(jax.random.split(key))


def virtual_start(spec: SearchSpec, state: SearchState, images: jax.Array):
  """δ0 of the step's virtual explanation (None without an audience)."""
  if not spec.problem.has_audience:
    return None
  key, _ = step_keys(state)
  return hg.explanation_start(key, images.shape, spec.problem.explanation, images.dtype)


def real_steps(spec: SearchSpec, state: SearchState, alpha_grad: PyTree | None,
               train: hg.Batch):
  """Stage 5: the architecture step (none when `alpha_grad` is None: warm-up), then the real E
  step, a fresh δ', the real W step.

  Built from the same jitted pieces as the hypergradient (`explainer_grads`, the explanation
  ascent, `audience_grads`), so in the pieces driver it compiles nothing new.
  """
  problem = spec.problem
  alphas, alphas_opt_state = state.alphas, state.alphas_opt_state
  if alpha_grad is not None:
    alphas, alphas_opt_state = hg.apply_update(spec.arch_tx, alpha_grad, alphas_opt_state,
                                               alphas)
  e_loss, e_logits, e_grad, _ = hg.explainer_grads(problem, state.explainer, alphas, train)
  metrics = {'explainer_train_loss': e_loss,
             'explainer_train_acc': hg.accuracy(e_logits, train['label']),
             'explainer_grad_norm': hg.tree_norm(e_grad)}
  explainer, explainer_opt_state = hg.apply_update(
      problem.explainer_tx, optim.clip_by_global_norm(e_grad, spec.explainer_clip),
      state.explainer_opt_state, state.explainer)
  audience, audience_opt_state = state.audience, state.audience_opt_state
  if problem.has_audience:
    _, key = step_keys(state)
    delta0 = hg.explanation_start(key, train['image'].shape, problem.explanation,
                                  train['image'].dtype)
    delta_raw = hg.explanation_raw(problem, explainer, alphas, train['image'], train['label'],
                                   delta0)
    _, inputs = hg.audience_inputs(problem, delta_raw, train['image'])
    w_loss, w_logits, w_grad = hg.audience_grads(problem, audience, inputs, train['label'])
    audience, audience_opt_state = hg.apply_update(
        problem.audience_tx, optim.clip_by_global_norm(w_grad, spec.audience_clip),
        audience_opt_state, audience)
    metrics.update(audience_train_loss=w_loss,
                   audience_train_acc=hg.accuracy(w_logits, train['label']))
  new_state = state.replace(step=state.step + 1, explainer=explainer, alphas=alphas,
                            audience=audience, explainer_opt_state=explainer_opt_state,
                            audience_opt_state=audience_opt_state,
                            alphas_opt_state=alphas_opt_state)
  return new_state, metrics


def search_step(spec: SearchSpec, state: SearchState, train: hg.Batch, val: hg.Batch,
                split_terms: bool = True,
                update_arch: bool = True) -> tuple[SearchState, dict[str, jax.Array]]:
  """One LeaSE iteration (stages 1-5); pure, so it can also be jitted whole.

  Returns the new state and the iteration's metrics: explainer and audience train / val losses
  and accuracies (val: of the look-ahead weights E', W'), ‖∇_A‖ and its explainer and audience
  terms (when computed, see `hypergrad.hypergradient`), the learning rate, the mean |δ'|. With
  `update_arch` False (warm-up) A does not move (the module docstring).
  """
  problem = spec.problem
  if not update_arch:
    # The validation pass of first order (the same compiled program as the hypergradient's
    # validation gradient) for the metrics only; its gradient is not applied.
    grads = hg.hypergradient(
        'first_order', problem, E=state.explainer, A=state.alphas, W=state.audience,
        explainer_state=state.explainer_opt_state, audience_state=state.audience_opt_state,
        train=train, val=val)
    metrics = dict(grads.metrics)
    if spec.learning_rate is not None:
      metrics['learning_rate'] = jax.jit(spec.learning_rate)(state.step).astype(jnp.float32)
    new_state, step_metrics = real_steps(spec, state, None, train)
    return new_state, {**metrics, **step_metrics}
  grads = hg.hypergradient(
      spec.mode, problem, E=state.explainer, A=state.alphas, W=state.audience,
      explainer_state=state.explainer_opt_state, audience_state=state.audience_opt_state,
      train=train, val=val, delta0=virtual_start(spec, state, train['image']),
      split_terms=split_terms)
  metrics = {**grads.metrics, 'alpha_grad_norm': hg.tree_norm(grads.total)}
  if grads.explainer is not None:
    metrics['alpha_grad_norm_explainer'] = hg.tree_norm(grads.explainer)
    metrics['alpha_grad_norm_audience'] = hg.tree_norm(grads.audience)
  if spec.learning_rate is not None:
    metrics['learning_rate'] = jax.jit(spec.learning_rate)(state.step).astype(jnp.float32)
  new_state, step_metrics = real_steps(spec, state, grads.total, train)
  return new_state, {**metrics, **step_metrics}


def make_step(spec: SearchSpec, jit_whole: bool):
  """The iteration as a callable `(state, train, val, split_terms=True, update_arch=True) ->
  (state, metrics)`.

  `jit_whole`: one jitted program (the state's buffers are donated) that always splits the
  hypergradient's terms (one program, not one per value of `split_terms`; a second one for the
  warm-up's steps); otherwise the thin driver over jitted pieces, which splits them when asked
  (the pieces are shared). The new state does not depend on `split_terms`.
  """
  if jit_whole:
    jitted = jax.jit(functools.partial(search_step, spec, split_terms=True), donate_argnums=(0,),
                     static_argnames=('update_arch',))
    return (lambda state, train, val, split_terms=True, update_arch=True:
            jitted(state, train, val, update_arch=update_arch))
  return functools.partial(search_step, spec)


def explain_batch(spec: SearchSpec, state: SearchState, images: jax.Array, labels: jax.Array):
  """(δ', the audience's input a(δ', x)) of `images` at the state, as the next real step would
  compute them (its δ0 key, the current E and A): what the explanation pictures show."""
  problem = spec.problem
  _, key = step_keys(state)
  delta0 = hg.explanation_start(key, images.shape, problem.explanation, images.dtype)
  delta_raw = hg.explanation_raw(problem, state.explainer, state.alphas, images, labels, delta0)
  return hg.audience_inputs(problem, delta_raw, images)


def architecture_objective(spec: SearchSpec, state: SearchState, train: hg.Batch,
                           val: hg.Batch) -> jax.Array:
  """O_A at the state, with the step's own δ0 (Eq. 9): the quantity A descends."""
  (explainer_val, audience_val), _ = hg.unrolled_objective(
      spec.problem, state.alphas, state.explainer, state.audience, state.explainer_opt_state,
      state.audience_opt_state, train, val, virtual_start(spec, state, train['image']))
  return explainer_val + spec.problem.gamma * audience_val
