"""The search loop: the only I/O around `lease.search_step` (data, checkpoints, logs, outputs).

`train_and_evaluate(config, workdir)` runs (or resumes) a search and writes to `workdir`:

  genotype.json     the final genotype (DARTS's JSON form)
  alphas.json       the final A: {"alphas_normal": [[8] x 14], "alphas_reduce": [...]}
  summary.json      genotype, parameters of its CIFAR evaluation network, search time, metrics
  history.jsonl     one line per epoch: step, genotype, A, the epoch's mean metrics
  plots/            α heatmaps and cell drawings, per epoch and final (PNG; SVG and DOT cells)
  log.txt, events.* the metrics, as text and as TensorBoard events
  checkpoints/      orbax checkpoints (every `checkpoint_every` steps and at each epoch's end)
  config.json       the run's config (a different config is refused in this workdir)

Running the same command again resumes from the latest checkpoint; the batches are a function of
the step and the step's randomness of (seed, step), so a run killed at any point and resumed
ends bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from lease_jax import builders, checkpoint, data, lease, parallel, search_space, visualize
from lease_jax import writers
from lease_jax.models.explainer import ALPHA_KEYS


def _genotype(state, steps: int, multiplier: int) -> search_space.Genotype:
  alphas = jax.device_get(state.alphas)
  return search_space.derive_genotype(np.asarray(alphas['alphas_normal']),
                                      np.asarray(alphas['alphas_reduce']), steps, multiplier)


def eval_network_params(genotype: search_space.Genotype, num_classes: int) -> dict[str, int]:
  """Parameters of the genotype's DARTS CIFAR evaluation network (C=36, 20 cells)."""
  from lease_jax.genotype_cli import count_eval_params
  total, no_aux = count_eval_params(genotype, 'cifar', 36, 20, num_classes)
  return {'params': total, 'params_no_aux': no_aux}


def _format_genotype(genotype: search_space.Genotype) -> str:
  cell = lambda edges: ' '.join(f'{op}<-{i}' for op, i in edges)
  return f'normal [{cell(genotype.normal)}] reduce [{cell(genotype.reduce)}]'


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs or resumes the search `config` describes in `workdir`; returns the summary."""
  started = time.time()
  builders.check_config(config)
  mesh = parallel.make_mesh(config)
  info, train_source, _ = data.load_sources(config.data)
  train, val = builders.search_streams(config, info, train_source)
  steps_per_epoch = train.steps_per_epoch
  groups = parallel.bn_groups(config, mesh)
  search = builders.build_search(config, info, steps_per_epoch, bn_groups=groups)
  total_steps = config.search.epochs * steps_per_epoch
  stop_at = total_steps if config.search.max_steps < 0 else min(total_steps,
                                                                 config.search.max_steps)
  is_chief = jax.process_index() == 0
  run_config = {k: v for k, v in config.to_dict().items() if k != 'train'}  # what a search uses
  # The device count may change on resume (4 -> 1 gives the same maths with global BatchNorm);
  # per-device BatchNorm statistics would change, so their group count is part of the config.
  run_config['batch_norm_groups'] = groups
  ckpt = checkpoint.Checkpointer(workdir, run_config, config.search.keep_checkpoints)
  state, resumed = ckpt.restore_or(search.init_state(config.seed))
  state = parallel.replicate(state, mesh)
  start = int(state.step)
  history_path = os.path.join(workdir, 'history.jsonl')
  history = [e for e in checkpoint.read_jsonl(history_path) if e['step'] <= start]
  elapsed_before = history[-1]['elapsed_s'] if history else 0.0
  writer = writers.MetricWriter(workdir, just_logging=not is_chief)
  plots = os.path.join(workdir, 'plots')
  if resumed:
    print(f'resuming {workdir} from step {start}', flush=True)
    writer.write_text_line(f'resumed at step {start}')
  steps, multiplier = config.explainer.steps, config.explainer.multiplier

  step_fn = lease.make_step(search.spec, config.search.jit_whole_step)
  process = (jax.process_index(), jax.process_count())
  prefetch = data.Prefetcher(lambda s: (train.batch(s, *process), val.batch(s, *process)), start)
  averager, epoch_averager = writers.Averager(), writers.Averager()
  progress = writers.progress_bar(total_steps, start, is_chief, 'search')
  log_every = max(1, config.search.log_every)
  try:
    for step in range(start, stop_at):
      train_batch, val_batch = prefetch.get(step)
      epoch_end = (step + 1) % steps_per_epoch == 0
      log_now = (step + 1) % log_every == 0 or epoch_end
      state, metrics = step_fn(state, parallel.shard_batch(train_batch, mesh),
                               parallel.shard_batch(val_batch, mesh), split_terms=log_now)
      averager.add(metrics)
      epoch_averager.add(metrics)
      if log_now:
        means = averager.read()
        writer.write_scalars(step + 1, means)
        progress.set_postfix({k.replace('_loss', ''): f'{v:.3f}' for k, v in means.items()
                              if k in ('explainer_train_loss', 'explainer_val_loss',
                                       'audience_val_loss')}, refresh=False)
      progress.update(1)
      if epoch_end:
        epoch = (step + 1) // steps_per_epoch
        genotype = _genotype(state, steps, multiplier)
        alphas = jax.device_get(state.alphas)
        entry = {'epoch': epoch, 'step': step + 1,
                 'elapsed_s': elapsed_before + time.time() - started,
                 'genotype': genotype.to_json_dict(),
                 'alphas': {k: np.asarray(alphas[k]).tolist() for k in ALPHA_KEYS},
                 'metrics': epoch_averager.read()}
        history.append(entry)
        ckpt.save(step + 1, state)
        if is_chief:
          checkpoint.write_jsonl(history_path, history)
          _write_outputs(workdir, state, genotype)
          prefix = f'epoch{epoch:03d}_'
          visualize.draw_alphas(alphas['alphas_normal'], alphas['alphas_reduce'],
                                os.path.join(plots, f'{prefix}alphas.png'), f'epoch {epoch}')
          visualize.draw_genotype(genotype, plots, prefix)
          writer.write_texts(step + 1, {'genotype': genotype.to_json()})
          m = entry['metrics']
          progress.write(
              f'epoch {epoch}/{config.search.epochs} step {step + 1}: explainer train '
              f'{m.get("explainer_train_loss", np.nan):.3f} / acc '
              f'{m.get("explainer_train_acc", np.nan):.3f}, val '
              f'{m.get("explainer_val_loss", np.nan):.3f} / '
              f'{m.get("explainer_val_acc", np.nan):.3f}; audience val '
              f'{m.get("audience_val_loss", np.nan):.3f} / '
              f'{m.get("audience_val_acc", np.nan):.3f}; |grad A| '
              f'{m.get("alpha_grad_norm", np.nan):.3g} | {_format_genotype(genotype)}')
      elif (step + 1) % config.search.checkpoint_every == 0:
        ckpt.save(step + 1, state)
  finally:
    progress.close()
    prefetch.close()

  finished = int(state.step) >= total_steps
  ckpt.finish(state)
  genotype = _genotype(state, steps, multiplier)
  summary = {
      'genotype': genotype.to_json_dict(),
      'finished': finished, 'step': int(state.step), 'total_steps': total_steps,
      'epochs': config.search.epochs, 'dataset': info.name, 'mode': config.search.mode,
      'gamma': config.search.gamma,
      'search_time_s': elapsed_before + time.time() - started,
      'final_metrics': history[-1]['metrics'] if history else {},
      'cifar_eval_network': eval_network_params(genotype, info.num_classes),
  }
  if is_chief:
    _write_outputs(workdir, state, genotype)
    alphas = jax.device_get(state.alphas)
    visualize.draw_alphas(alphas['alphas_normal'], alphas['alphas_reduce'],
                          os.path.join(plots, 'alphas.png'), 'final')
    visualize.draw_genotype(genotype, plots)
    search_space.write_json_atomic(os.path.join(workdir, 'summary.json'), summary, indent=1)
  writer.flush()
  writer.close()
  return summary


def _write_outputs(workdir, state, genotype):
  alphas = jax.device_get(state.alphas)
  search_space.save_genotype(os.path.join(workdir, 'genotype.json'), genotype)
  search_space.save_alphas(os.path.join(workdir, 'alphas.json'), alphas['alphas_normal'],
                           alphas['alphas_reduce'])
