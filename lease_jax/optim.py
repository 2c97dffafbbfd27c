"""The optimizers of a search, as optax transforms (DARTS's settings by default).

- Weights (explainer E, audience W): PyTorch `SGD(lr, momentum, weight_decay)`, i.e. L2 added to
  the gradient, then heavy-ball momentum; the learning rate follows `CosineAnnealingLR(epochs,
  eta_min)` stepped once per epoch, so it is constant within an epoch, and epoch e (0-based)
  trains at the rate of e: the first epoch at the base rate, the last one step above the
  minimum. That is the order DARTS's searches and evaluations ran in: they call
  `scheduler.step()` at each epoch's start, which under the PyTorch they used (0.3) moved the
  scheduler from -1 to e. Run under PyTorch >= 1.1, whose constructor already takes that step,
  the same code trains epoch e at the rate of e + 1 and its last epoch at the minimum (0 for the
  evaluation): a shift of one epoch that this code does not follow (README, "Running
  experiments"). Gradient-norm clipping is applied by the real step only (the virtual
  step of the hypergradient uses the raw gradient, as DARTS's `_compute_unrolled_model` does), so
  it is not part of the transform.
- Architecture A: PyTorch `Adam(lr, betas, weight_decay)`: L2 added to the gradient, then Adam.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from lease_jax import precompile


def per_epoch_cosine(base: float, minimum: float, epochs: int, steps_per_epoch: int):
  """`lr(step) = min + (base - min) (1 + cos(π e / epochs)) / 2`, e = step // steps_per_epoch."""
  if epochs < 1 or steps_per_epoch < 1:
    raise ValueError(f'epochs ({epochs}) and steps_per_epoch ({steps_per_epoch}) must be >= 1')

  def schedule(step):
    epoch = jnp.floor_divide(step, steps_per_epoch)
    return minimum + (base - minimum) * 0.5 * (1 + jnp.cos(jnp.pi * epoch / epochs))

  return schedule


def weights_optimizer(learning_rate: float, learning_rate_min: float, momentum: float,
                      weight_decay: float, epochs: int, steps_per_epoch: int,
                      ) -> optax.GradientTransformation:
  """SGD + momentum + L2 weight decay on a per-epoch cosine schedule (no clipping)."""
  schedule = per_epoch_cosine(learning_rate, learning_rate_min, epochs, steps_per_epoch)
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(schedule, momentum=momentum or None))


def arch_optimizer(learning_rate: float, b1: float, b2: float,
                   weight_decay: float) -> optax.GradientTransformation:
  """PyTorch Adam with L2 weight decay (DARTS: 3e-4, (0.5, 0.999), 1e-3)."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.scale_by_adam(b1=b1, b2=b2, eps=1e-8),
                     optax.scale(-learning_rate))


@precompile.jit(static_argnames='max_norm')
def clip_by_global_norm(grads, max_norm: float):
  """`nn.utils.clip_grad_norm(params, max_norm)`; `max_norm <= 0` disables it."""
  if max_norm <= 0:
    return grads
  clipped, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
  return clipped
