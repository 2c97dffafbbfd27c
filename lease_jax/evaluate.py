"""Architecture evaluation: train a genotype's network from scratch and report its test error.

`train_and_evaluate(config, genotype, workdir)` trains DARTS's `NetworkCIFAR` (or
`NetworkImageNet`) built from `genotype` with DARTS's recipe (`cnn/train.py`,
`cnn/train_imagenet.py`) and writes to `workdir`:

  summary.json      genotype, parameters (with and without the auxiliary head), test error
  history.jsonl     one line per epoch: train loss/accuracy, test loss/accuracy, learning rate
  log.txt, events.* the metrics, as text and as TensorBoard events
  checkpoints/      orbax checkpoints (every `checkpoint_every` steps and at each epoch's end)
  config.json       the run's config (a different config is refused in this workdir)

The recipe, per step: loss = CE(logits) + aux_weight · CE(logits_aux) (label smoothing for
ImageNet); SGD momentum 0.9 with L2 weight decay; gradient-norm clip 5; the learning rate per
epoch (cosine to 0 for CIFAR, ×0.97 per epoch for ImageNet); drop-path probability
`drop_path_prob · epoch / epochs`. Batches are a pure function of (seed, step) and the step's
randomness (drop path) of (seed, step), so a resumed run is bitwise identical to an
uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lease_jax import builders, checkpoint, data, harness, optim, parallel, search_space
from lease_jax import writers
from lease_jax.models import eval_network

PyTree = Any

NETWORKS = ('cifar', 'imagenet')
SCHEDULES = ('cosine', 'exponential')


@flax.struct.dataclass
class TrainState:
  """Everything a training run carries from step to step."""

  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree
  rng: jax.Array


@flax.struct.dataclass
class TrainSpec:
  """The static parts of a training step."""

  model: Any = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  learning_rate: Any = flax.struct.field(pytree_node=False)
  epochs: int = flax.struct.field(pytree_node=False)
  steps_per_epoch: int = flax.struct.field(pytree_node=False)
  drop_path_prob: float = flax.struct.field(pytree_node=False)
  aux_weight: float = flax.struct.field(pytree_node=False)
  label_smoothing: float = flax.struct.field(pytree_node=False)
  grad_clip: float = flax.struct.field(pytree_node=False)


def learning_rate_schedule(cfg, steps_per_epoch: int):
  """DARTS's per-epoch schedules: `CosineAnnealingLR(epochs)` (to 0) or `StepLR(1, gamma)`."""
  if cfg.lr_schedule == 'cosine':
    return optim.per_epoch_cosine(cfg.learning_rate, cfg.learning_rate_min, cfg.epochs,
                                  steps_per_epoch)
  if cfg.lr_schedule == 'exponential':
    return lambda step: cfg.learning_rate * cfg.lr_decay ** jnp.floor_divide(step,
                                                                             steps_per_epoch)
  raise ValueError(f'train.lr_schedule {cfg.lr_schedule!r}; accepted: {", ".join(SCHEDULES)}')


def classification_loss(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  """Mean cross-entropy against (optionally smoothed) one-hot labels."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def train_step(spec: TrainSpec, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
  """One SGD step on `CE + aux_weight · CE_aux` with drop path; returns metrics."""
  epoch = jnp.floor_divide(state.step, spec.steps_per_epoch)
  drop_prob = spec.drop_path_prob * epoch / spec.epochs
  key = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    (logits, logits_aux), updates = spec.model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        drop_path_prob=drop_prob, rngs={'dropout': key}, mutable=['batch_stats'])
    loss = classification_loss(logits, batch['label'], spec.label_smoothing)
    total = loss
    if logits_aux is not None and spec.aux_weight > 0:
      total = total + spec.aux_weight * classification_loss(logits_aux, batch['label'],
                                                             spec.label_smoothing)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return total, (updates['batch_stats'], loss, accuracy)

  (total, (batch_stats, loss, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  grads = optim.clip_by_global_norm(grads, spec.grad_clip)
  updates, opt_state = spec.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  # `train_loss` is the main head's; DARTS's train.py logs the objective with the auxiliary
  # head's share, `train_loss_with_aux` (equal without the head).
  return new_state, {'train_loss': loss, 'train_loss_with_aux': total, 'train_acc': accuracy,
                     'learning_rate': spec.learning_rate(state.step)}


def eval_step(spec: TrainSpec, state: TrainState, batch: dict) -> dict:
  """Sums of loss and correct predictions over the unmasked rows of a test batch."""
  logits, _ = spec.model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                               batch['image'], train=False)
  targets = jax.nn.one_hot(batch['label'], logits.shape[-1])
  losses = optax.softmax_cross_entropy(logits, targets)
  correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
  mask = batch['mask']
  return {'loss_sum': jnp.sum(losses * mask), 'correct': jnp.sum(correct * mask),
          'count': jnp.sum(mask)}


def build(config, info: data.DatasetInfo, genotype: search_space.Genotype,
          steps_per_epoch: int, bn_groups: int = 1) -> tuple[TrainSpec, Any]:
  """(spec, init_state(seed)) of the evaluation training a config describes."""
  cfg = config.train
  if cfg.network not in NETWORKS:
    raise ValueError(f'train.network {cfg.network!r}; accepted: {", ".join(NETWORKS)}')
  network = (eval_network.NetworkCIFAR if cfg.network == 'cifar'
             else eval_network.NetworkImageNet)
  if cfg.network == 'cifar':  # its reductions' FactorizedReduce needs even sides at each
    side = 2 ** len({cfg.layers // 3, 2 * cfg.layers // 3})
    height, width = info.image_shape[:2]
    if height % side or width % side:
      raise data.DataError(f'images of {height}x{width}: the CIFAR network halves their sides '
                           f'at each of its {side.bit_length() - 1} reductions, which needs '
                           f'sides divisible by {side}; resize the images or change '
                           f'train.layers')
  model = network(genotype, cfg.channels, info.num_classes, cfg.layers, bool(cfg.auxiliary),
                  bn_groups=bn_groups, impl=cfg.impl)
  schedule = learning_rate_schedule(cfg, steps_per_epoch)
  tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                   optax.sgd(schedule, momentum=cfg.momentum or None))
  spec = TrainSpec(model, tx, schedule, int(cfg.epochs), steps_per_epoch,
                   float(cfg.drop_path_prob), float(cfg.auxiliary_weight),
                   float(cfg.label_smoothing), float(cfg.grad_clip))

  def init_state(seed: int) -> TrainState:
    key_init, key_rng = jax.random.split(jax.random.PRNGKey(seed))
    sample = jnp.zeros((2 * bn_groups,) + info.image_shape, jnp.float32)  # 2 per BN group
    init = functools.partial(model.init, train=True)
    variables = jax.jit(init)({'params': key_init, 'dropout': key_init}, sample)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
                      rng=key_rng)

  return spec, init_state


def train_streams(config, info, train_source, test_source, devices: int = 1):
  """(train, test) streams of an evaluation; with `train.keep_partial_batch` each training epoch
  ends with its partial batch (DARTS's `train.py`), as many rows of it as split over `devices`."""
  cfg = config.train
  train_transform = data.Transform(cfg.augment, info.mean, info.std, config.data.padding,
                                   cutout=int(cfg.cutout))
  test_transform = data.Transform('imagenet_eval' if cfg.augment == 'imagenet_train' else 'none',
                                  info.mean, info.std)
  workers = config.data.get('workers', 0)
  train = data.BatchStream(train_source, builders.train_indices(config, train_source),
                           cfg.batch_size, config.seed, train_transform, workers=workers,
                           keep_partial=bool(cfg.get('keep_partial_batch', False)),
                           multiple=devices)
  if test_source is None:
    raise data.DataError('the dataset has no test split (image folders need a test/ folder)')
  # A class-balanced subset when truncated (test folders list class by class), in source order.
  indices = np.sort(data.balanced_subset(test_source.labels, builders.split_seed(config),
                                         cfg.get('test_examples', -1)))
  test = data.BatchStream(test_source, indices, cfg.eval_batch_size, 0, test_transform,
                          shuffle=False, workers=workers)
  return train, test


def evaluate(eval_fn, state, test: data.BatchStream, mesh) -> dict[str, float]:
  """Test loss, accuracy and error over the whole test stream."""
  process = (jax.process_index(), jax.process_count())
  totals = None
  for k in range(test.steps_per_epoch):
    batch = test.batch(k, *process)
    inputs = parallel.shard_batch(batch, mesh, keys=('image', 'label', 'mask'))
    sums = eval_fn(state, inputs)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  count = float(totals['count'])
  accuracy = float(totals['correct']) / count
  return {'test_loss': float(totals['loss_sum']) / count, 'test_acc': accuracy,
          'test_error': 1.0 - accuracy}


def train_and_evaluate(config, genotype: search_space.Genotype, workdir: str) -> dict:
  """Trains (or resumes training) `genotype`'s network; returns the summary."""
  started = time.time()
  harness.check_workdir(workdir)
  builders.check_config(config, 'train')
  with harness.one_run(workdir, 'lease-train', jax.process_index() == 0):
    return _train(config, genotype, workdir, started)


def _train(config, genotype: search_space.Genotype, workdir: str, started: float) -> dict:
  cfg = config.train
  mesh = parallel.make_mesh(config)
  info, train_source, test_source = data.load_sources(config.data)
  train, test = train_streams(config, info, train_source, test_source,
                              devices=1 if mesh is None else mesh.devices.size)
  steps_per_epoch = train.steps_per_epoch
  groups = parallel.bn_groups(config, mesh)
  spec, init_state = build(config, info, genotype, steps_per_epoch, bn_groups=groups)
  total_steps = spec.epochs * steps_per_epoch
  stop_at = total_steps if cfg.max_steps < 0 else min(total_steps, cfg.max_steps)
  is_chief = jax.process_index() == 0

  used = ('seed', 'data', 'train', 'parallel')  # what a training run uses of the config
  run_config = {k: v for k, v in config.to_dict().items() if k in used}
  run_config['genotype'] = genotype.to_json_dict()
  run_config['batch_norm_groups'] = groups  # see search.py: device count may change on resume
  record = harness.RunRecord(workdir, run_config, cfg.keep_checkpoints, is_chief)
  state, resumed = record.restore_or(init_state(config.seed))
  state = parallel.replicate(state, mesh)
  start = int(state.step)
  history = record.history
  writer = writers.MetricWriter(workdir, just_logging=not is_chief)
  if resumed:
    print(f'resuming {workdir} from step {start}', flush=True)
    writer.write_text_line(f'resumed at step {start}')

  step_fn = jax.jit(functools.partial(train_step, spec), donate_argnums=0)
  eval_fn = jax.jit(functools.partial(eval_step, spec))
  process = (jax.process_index(), jax.process_count())
  prefetch = data.Prefetcher(lambda s: train.batch(s, *process), start)
  progress = writers.progress_bar(total_steps, start, is_chief, 'train')
  log_every = max(1, cfg.log_every)
  last_test: dict[str, float] = history[-1]['test'] if history else {}
  hint = f' (a learning rate too large? train.learning_rate {cfg.learning_rate})'
  try:
    with checkpoint.stopping_safely(record.ckpt, lambda: int(state.step)):
      for step in range(start, stop_at):
        state, metrics = step_fn(state, parallel.shard_batch(prefetch.get(step), mesh))
        checkpoint.check_finite_metrics(step + 1, metrics, hint)
        record.add(metrics)
        epoch_end = (step + 1) % steps_per_epoch == 0
        if (step + 1) % log_every == 0 or epoch_end:
          means = record.window.read()
          writer.write_scalars(step + 1, means)
          progress.set_postfix(loss=f'{means["train_loss"]:.3f}', acc=f'{means["train_acc"]:.3f}',
                               refresh=False)
        progress.update(1)
        if epoch_end:
          epoch = (step + 1) // steps_per_epoch
          if epoch % max(1, cfg.eval_every_epochs) == 0 or epoch == spec.epochs:
            last_test = evaluate(eval_fn, state, test, mesh)
            writer.write_scalars(step + 1, last_test)
          entry = {'epoch': epoch, 'step': step + 1,
                   'elapsed_s': record.elapsed_before + time.time() - started,
                   'train': record.epoch.read(), 'test': last_test}
          record.end_epoch(step + 1, state, entry, hint)  # refuses a non-finite state
          if is_chief:
            train_metrics = entry['train']
            progress.write(f'epoch {epoch}/{spec.epochs}: train loss '
                           f'{train_metrics["train_loss"]:.3f} acc '
                           f'{train_metrics["train_acc"]:.3f}; test error '
                           f'{last_test.get("test_error", float("nan")):.4f}')
        elif (step + 1) % cfg.checkpoint_every == 0:
          record.save(step + 1, state, hint)
  except checkpoint.NonFiniteError as error:
    record.stop_non_finite(writer, error, total_steps, {
        'genotype': genotype.to_json_dict(), 'test': history[-1]['test'] if history else {}})
    raise
  finally:
    progress.close()
    prefetch.close()
    writer.flush()  # every event so far on disk, whatever ends the loop (Ctrl-C leaves at once)

  finished = int(state.step) >= total_steps
  record.finish(state, hint)
  if not last_test or not history or history[-1]['step'] != int(state.step):
    last_test = evaluate(eval_fn, state, test, mesh)  # a stopped run reports its current error
  params = jax.device_get(state.params)
  summary = {
      'genotype': genotype.to_json_dict(), 'finished': finished, 'step': int(state.step),
      'total_steps': total_steps, 'epochs': spec.epochs, 'dataset': info.name,
      'network': cfg.network, 'channels': cfg.channels, 'layers': cfg.layers,
      'params': eval_network.count_params(params),
      'params_no_aux': eval_network.count_params(params, exclude='auxiliary_head'),
      'train_time_s': record.elapsed_before + time.time() - started,
      **last_test,
  }
  if is_chief:
    writers.write_json_atomic(os.path.join(workdir, 'summary.json'), summary, indent=1)
    writer.write_text_line(json.dumps(summary))
  writer.flush()
  writer.close()
  return summary
