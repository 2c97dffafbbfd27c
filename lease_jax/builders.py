"""From a config to the pure objects of a search: models, optimizers, the `SearchSpec`."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from lease_jax import data, errors, hypergrad, kernels, lease, optim, parallel, precompile
from lease_jax import spaces
from lease_jax.models import audience as audience_lib


@dataclasses.dataclass(frozen=True)
class Search:
  """A configured search: the static spec and what initialises its state."""

  spec: lease.SearchSpec
  space: spaces.Space  # the search space and its supernet (the explainer)
  audience: audience_lib.ResNet | None
  info: data.DatasetInfo
  steps_per_epoch: int
  init_scale: float = 1e-3

  def init_state(self, seed: int) -> lease.SearchState:
    """The step-0 state: weights, A = init_scale · N(0, 1), fresh optimizer states, the RNG."""
    key_e, key_a, key_w, key_rng = jax.random.split(jax.random.PRNGKey(seed), 4)
    # Two examples per BatchNorm group (per-device statistics need the batch to split).
    sample = jnp.zeros((2 * self.space.model.bn_groups,) + self.info.image_shape, jnp.float32)
    alphas = self.space.init_arch(key_a, self.init_scale)
    inits = [(jax.jit(self.space.model.init), (key_e, alphas, sample), {})]
    if self.audience:
      inits.append((jax.jit(self.audience.init), (key_w, sample), {}))
    # Both programs at once, on two cores, built for a single run (None when traced).
    programs = precompile.compile_all(inits, compiler_options=precompile.run_once_options())
    params = [(program or init)(*args)['params']
              for program, (init, args, _) in zip(programs, inits)]
    explainer, audience = params[0], params[1] if self.audience else {}
    return lease.init_state(self.spec, explainer, alphas, audience, key_rng)


def _field(config, field: str):
  """The value of a dotted config field, or one line naming the field that the config lacks."""
  value = config
  for depth, key in enumerate(field.split('.')):
    try:
      value = value[key]
    except (KeyError, TypeError):
      missing = '.'.join(field.split('.')[:depth + 1])
      raise errors.UserError(
          f'config field {missing!r} is missing; a config file should start from a packaged one '
          f'(e.g. `from lease_jax.configs import default; config = default.get_config()`)'
      ) from None
  return value


def _choice(config, field: str, accepted) -> None:
  value = _field(config, field)
  if value not in accepted:
    raise errors.UserError(f'{field} {value!r}; accepted: {", ".join(map(str, accepted))}')


def _at_least(config, field: str, minimum) -> None:
  value = _field(config, field)
  if value < minimum:
    raise errors.UserError(f'{field} = {value}; must be >= {minimum}')


def _positive(config, field: str) -> None:
  value = _field(config, field)
  if not value > 0:
    raise errors.UserError(f'{field} = {value}; must be > 0')


def _numbers(tree, prefix: str = ''):
  """(dotted field, value) of every number in a config (nested dicts)."""
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _numbers(value, f'{prefix}{key}.')
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield f'{prefix}{key}', value


def check_config(config, job: str | None = None) -> None:
  """Rejects a config value that cannot work, naming the field and what is accepted, before
  anything is built or written; with `job` ('search' | 'train'), a config that lacks its block."""
  if job is not None and job not in config:
    example = 'default' if job == 'search' else 'eval_cifar10'
    raise errors.UserError(f'the config has no {job!r} block; this command needs a {job} '
                              f'config (e.g. configs/{example}.py)')
  for field, value in _numbers(config.to_dict()):
    if not math.isfinite(value):
      raise errors.UserError(f'{field} = {value}; every number of a config must be finite')
  max_examples = config.data.get('max_examples', -1)
  if max_examples != -1 and max_examples < 2:
    raise errors.UserError(f'data.max_examples = {max_examples}; accepted: -1 (every example) '
                           f'or >= 2 (a class-balanced subset)')
  _choice(config, 'data.source', data.SOURCES)
  _choice(config, 'data.augment', data.Transform.KINDS)
  _choice(config, 'parallel.batch_norm', parallel.BATCH_NORM)
  _at_least(config, 'parallel.num_devices', 0)
  _at_least(config, 'seed', 0)
  _at_least(config, 'data.split_seed', 0)
  _at_least(config, 'data.padding', 0)
  if 'search' in config:
    _choice(config, 'search.mode', hypergrad.MODES)
    _choice(config, 'explanation.target', hypergrad.TARGETS)
    _choice(config, 'explanation.start', hypergrad.STARTS)
    if config.explanation.start == 'zero' and config.explanation.target == 'soft':
      raise errors.UserError(
          "explanation.start 'zero' with explanation.target 'soft': the ascent gradient at "
          "δ0 = 0 is exactly zero (δ' = 0); use start 'random' or target 'label'")
    _choice(config, 'explanation.audience_input', hypergrad.AUDIENCE_INPUTS)
    _choice(config, 'explainer.impl', kernels.IMPLS)
    spaces.check_config(config)  # the space's and the base method's own checks
    for field in ('search.gamma', 'explanation.epsilon_pixels', 'hypergrad.fd_radius',
                  'search.plot_every'):
      _at_least(config, field, 0)
    if 'implicit_solver' in config.hypergrad:
      _choice(config, 'hypergrad.implicit_solver', hypergrad.SOLVERS)
      _at_least(config, 'hypergrad.implicit_damping', 0)
      _positive(config, 'hypergrad.implicit_scale')
    for field in ('hypergrad.explainer_steps', 'hypergrad.explanation_steps',
                  'hypergrad.audience_steps', 'hypergrad.implicit_iterations'):
      if field.split('.')[1] in config.hypergrad:
        _at_least(config, field, 1)
    for field in ('search.epochs', 'search.batch_size', 'explainer.channels',
                  'explainer.layers', 'audience.width', 'audience.blocks_per_stage',
                  'search.keep_checkpoints', 'search.checkpoint_every', 'explainer.steps'):
      _at_least(config, field, 1)
    for field in ('explainer.learning_rate', 'audience.learning_rate', 'arch.learning_rate'):
      _positive(config, field)
    warmup = config.search.get('warmup_epochs', 0)
    if not 0 <= warmup <= config.search.epochs:
      raise errors.UserError(f'search.warmup_epochs = {warmup}; accepted: 0..search.epochs '
                             f'({config.search.epochs})')
    for field in ('explainer.learning_rate_min', 'audience.learning_rate_min'):
      _at_least(config, field, 0)
  if 'train' in config:
    _choice(config, 'train.network', ('cifar', 'imagenet'))
    _choice(config, 'train.lr_schedule', ('cosine', 'exponential'))
    _choice(config, 'train.augment', data.Transform.KINDS)
    _choice(config, 'train.impl', kernels.IMPLS)
    for field in ('train.epochs', 'train.batch_size', 'train.eval_batch_size',
                  'train.channels', 'train.layers', 'train.keep_checkpoints',
                  'train.checkpoint_every'):
      _at_least(config, field, 1)
    _positive(config, 'train.learning_rate')
    _at_least(config, 'train.learning_rate_min', 0)


def epsilon(config, info: data.DatasetInfo) -> tuple[float, ...]:
  """ε per channel in the normalised input space: `epsilon_pixels / std_c`."""
  return tuple(float(config.explanation.epsilon_pixels / s) for s in info.std)


def build_search(config, info: data.DatasetInfo, steps_per_epoch: int,
                 bn_groups: int = 1) -> Search:
  """The search a config describes (models, optimizers, hypergradient mode, options)."""
  ex, au, search = config.explainer, config.audience, config.search
  space = spaces.make_space(config, info.num_classes, bn_groups)
  space.check_image_shape(info.image_shape)
  explainer_apply = space.apply_fn()
  gamma = float(search.gamma)
  audience = None
  audience_apply = audience_tx = None
  if gamma > 0:
    # 'smooth' (a study option) smooths the audience's kinks as well as the explainer's
    audience = audience_lib.ResNet(num_classes=info.num_classes, width=au.width,
                                   blocks_per_stage=au.blocks_per_stage, bn_groups=bn_groups,
                                   impl='smooth' if ex.impl == 'smooth' else 'auto')
    _, audience_apply = audience_lib.make_audience(audience)
    audience_tx = optim.weights_optimizer(au.learning_rate, au.learning_rate_min, au.momentum,
                                          au.weight_decay, search.epochs, steps_per_epoch)
  explanation = hypergrad.ExplanationOptions(
      epsilon=epsilon(config, info), step_size=float(config.explanation.step_size),
      target=config.explanation.target, clip=bool(config.explanation.clip),
      sign=bool(config.explanation.sign), start=config.explanation.start)
  problem = hypergrad.Problem(
      explainer_apply=explainer_apply, audience_apply=audience_apply,
      explainer_tx=optim.weights_optimizer(ex.learning_rate, ex.learning_rate_min, ex.momentum,
                                           ex.weight_decay, search.epochs, steps_per_epoch),
      audience_tx=audience_tx, explanation=explanation, gamma=gamma,
      audience_input=config.explanation.audience_input,
      fd_radius=float(config.hypergrad.fd_radius),
      explainer_steps=int(config.hypergrad.get('explainer_steps', 1)),
      explanation_steps=int(config.hypergrad.get('explanation_steps', 1)),
      audience_steps=int(config.hypergrad.get('audience_steps', 1)),
      implicit=hypergrad.ImplicitOptions(
          solver=config.hypergrad.get('implicit_solver', 'cg'),
          iterations=int(config.hypergrad.get('implicit_iterations', 10)),
          damping=float(config.hypergrad.get('implicit_damping', 1.0)),
          scale=float(config.hypergrad.get('implicit_scale', 0.025))))
  arch = config.arch
  spec = lease.SearchSpec(
      problem=problem,
      arch_tx=optim.arch_optimizer(arch.learning_rate, arch.b1, arch.b2, arch.weight_decay),
      mode=search.mode, explainer_clip=float(ex.grad_clip), audience_clip=float(au.grad_clip),
      learning_rate=optim.per_epoch_cosine(ex.learning_rate, ex.learning_rate_min,
                                           search.epochs, steps_per_epoch))
  return Search(spec, space, audience, info, steps_per_epoch, float(arch.init_scale))


def train_indices(config, train_source) -> np.ndarray:
  """The training examples a run uses: all, or a class-balanced `data.max_examples` of them."""
  return data.balanced_subset(train_source.labels, split_seed(config),
                              config.data.get('max_examples', -1))


def split_seed(config) -> int:
  return int(config.data.get('split_seed', 0))


def search_streams(config, info, train_source, batch_size: int | None = None):
  """The search's train and val `BatchStream`s (DARTS's split, class-balanced)."""
  batch_size = batch_size or config.search.batch_size
  train_idx, val_idx = data.search_split(train_source.labels, config.data.train_portion,
                                         split_seed(config), config.data.get('max_examples', -1))
  transform = data.Transform(config.data.augment, info.mean, info.std, config.data.padding)
  workers = config.data.get('workers', 0)
  train = data.BatchStream(train_source, train_idx, batch_size, config.seed, transform,
                           workers=workers)
  val = data.BatchStream(train_source, val_idx, batch_size, config.seed + 1, transform,
                         workers=workers)
  return train, val


def to_device(batch: dict, dtype=jnp.float32) -> dict:
  """The model's inputs of a numpy batch (the mask is for evaluation only)."""
  return {'image': jnp.asarray(batch['image'], dtype), 'label': jnp.asarray(batch['label'])}


def flat_norm(tree) -> float:
  return float(np.sqrt(sum(float(jnp.vdot(x, x)) for x in jax.tree.leaves(tree))))
