"""The search loop: the only I/O around `lease.search_step` (data, checkpoints, logs, outputs).

`train_and_evaluate(config, workdir)` runs (or resumes) a search and writes to `workdir`:

  genotype.json     the final cell (DARTS: DARTS's JSON genotype; NB201: {"arch": "|...|"})
  alphas.json       the final A: {"alphas_normal": [[8] x 14], "alphas_reduce": [...]} (DARTS;
                    the PC-DARTS base adds "betas_normal", "betas_reduce": [14]) or
                    {"alphas": [[5] x 6]} (NB201; with β also "betas": [6])
  summary.json      the cell, the split's class counts, search time, final metrics (the last
                    epoch's explainer and audience validation accuracy), for DARTS the CIFAR
                    evaluation network's parameters, with a benchmark table the looked-up values
  history.jsonl     one line per epoch: step, cell, A, the epoch's mean metrics (and look-ups)
  plots/            per epoch (every `search.plot_every` epochs and the last; 0: none) and
                    final: α as deviation from uniform with the derived choice outlined, the
                    cell drawings; per epoch also `epochNNN_explanations.png` (images, δ', the
                    audience's input), `alphas_trajectory.png`, `history.png` (accuracies,
                    |∇_A| by term)
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

from lease_jax import builders, checkpoint, data, harness, lease, parallel, precompile, spaces
from lease_jax import visualize, writers


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs or resumes the search `config` describes in `workdir`; returns the summary. One run
  per workdir: a second process is refused (`harness.one_run`)."""
  started = time.time()
  harness.check_workdir(workdir)
  builders.check_config(config, 'search')
  table = spaces.benchmark_table(config)  # a bad table is refused before anything is compiled
  with harness.one_run(workdir, 'lease-search', jax.process_index() == 0):
    return _search(config, workdir, table, started)


def _search(config, workdir: str, table, started: float) -> dict:
  mesh = parallel.make_mesh(config)
  info, train_source, _ = data.load_sources(config.data)
  train, val = builders.search_streams(config, info, train_source)
  steps_per_epoch = train.steps_per_epoch
  groups = parallel.bn_groups(config, mesh)
  search = builders.build_search(config, info, steps_per_epoch, bn_groups=groups)
  total_steps = config.search.epochs * steps_per_epoch
  # A stays frozen (bit for bit) for the first warm-up epochs (PC-DARTS: 15 of 50).
  warmup_steps = config.search.get('warmup_epochs', 0) * steps_per_epoch
  stop_at = total_steps if config.search.max_steps < 0 else min(total_steps,
                                                                 config.search.max_steps)
  is_chief = jax.process_index() == 0
  run_config = {k: v for k, v in config.to_dict().items() if k != 'train'}  # what a search uses
  # The device count may change on resume (4 -> 1 gives the same maths with global BatchNorm);
  # per-device BatchNorm statistics would change, so their group count is part of the config.
  run_config['batch_norm_groups'] = groups
  record = harness.RunRecord(workdir, run_config, config.search.keep_checkpoints, is_chief)
  state, resumed = record.restore_or(search.init_state(config.seed))
  state = parallel.replicate(state, mesh)
  start = int(state.step)
  history = record.history
  writer = writers.MetricWriter(workdir, just_logging=not is_chief)
  plots = os.path.join(workdir, 'plots')
  split_counts = {name: data.class_counts(train_source.labels, stream.indices, info.num_classes)
                  for name, stream in (('train', train), ('val', val))}
  if is_chief:
    line = (f'search split of {info.name}: train {len(train.indices)} examples, per class '
            f'{split_counts["train"]}; val {len(val.indices)}, per class {split_counts["val"]}')
    print(line, flush=True)
    writer.write_text_line(line)
  if resumed:
    print(f'resuming {workdir} from step {start}', flush=True)
    writer.write_text_line(f'resumed at step {start}')
  space = search.space

  step_fn = lease.make_step(search.spec, config.search.jit_whole_step)
  process = (jax.process_index(), jax.process_count())
  # A fixed batch of clean validation images (the training batch's shape: the explanation
  # programs are the ones the search step compiled) for the per-epoch explanation pictures.
  pictured = data.BatchStream(train_source, val.indices[:val.batch_size], val.batch_size, 0,
                              data.Transform('none', info.mean, info.std),
                              shuffle=False).batch(0, *process)
  fetch = lambda s: (train.batch(s, *process), val.batch(s, *process))
  prefetch = data.Prefetcher(fetch, start)
  progress = writers.progress_bar(total_steps, start, is_chief, 'search')
  log_every = max(1, config.search.log_every)
  hint = (f' (a learning rate too large? explainer {config.explainer.learning_rate}, audience '
          f'{config.audience.learning_rate}, arch {config.arch.learning_rate})')
  compiles = writers.CompileLog(writer).__enter__()
  ticker = writers.CompileTicker(progress, 'the search step') if start < stop_at else None
  try:
    with checkpoint.stopping_safely(record.ckpt, lambda: int(state.step)):
      if ticker is not None and mesh is None and not config.search.jit_whole_step:
        # The first step's programs, compiled on every core at once (precompile.py); a mesh's
        # sharded programs and the one-program step have nothing to gain from it.
        first = [parallel.shard_batch(b, mesh) for b in fetch(start)]
        ahead = time.time()
        count = precompile.compile_ahead(step_fn, state, *first, split_terms=True)
        writer.write_text_line(f'compiled the step\'s {count} programs ahead in '
                               f'{time.time() - ahead:.1f} s')
      for step in range(start, stop_at):
        train_batch, val_batch = prefetch.get(step)
        epoch_end = (step + 1) % steps_per_epoch == 0
        log_now = (step + 1) % log_every == 0 or epoch_end
        state, metrics = step_fn(state, parallel.shard_batch(train_batch, mesh),
                                 parallel.shard_batch(val_batch, mesh), split_terms=log_now,
                                 update_arch=step >= warmup_steps)
        checkpoint.check_finite_metrics(step + 1, metrics, hint)
        if step == start:
          seconds = ticker.done()
          writer.write_text_line(f'first step done in {seconds:.1f} s ({compiles.count} programs '
                                 f'compiled, {compiles.total:.1f} s of compilation)')
        record.add(metrics)
        if log_now:
          means = record.window.read()
          writer.write_scalars(step + 1, means)
          progress.set_postfix({k.replace('_loss', ''): f'{v:.3f}' for k, v in means.items()
                                if k in ('explainer_train_loss', 'explainer_val_loss',
                                         'audience_val_loss')}, refresh=False)
        progress.update(1)
        if epoch_end:
          checkpoint.check_finite_state(step + 1, state, hint)  # before any output of this epoch
          epoch = (step + 1) // steps_per_epoch
          genotype = space.derive(state.alphas)
          alphas = jax.device_get(state.alphas)
          entry = {'epoch': epoch, 'step': step + 1,
                   'elapsed_s': record.elapsed_before + time.time() - started,
                   'genotype': genotype.to_json_dict(),
                   'alphas': {k: np.asarray(alphas[k]).tolist() for k in space.arch_names},
                   'metrics': record.epoch.read()}
          benchmark = spaces.look_up(table, genotype)
          missing = spaces.missing_note(genotype, benchmark)
          if missing and is_chief:  # said once per epoch, not a silent {}
            progress.write(f'epoch {epoch}: {missing}')
            writer.write_text_line(f'epoch {epoch}: {missing}')
          if benchmark is not None:
            entry['benchmark'] = benchmark
            writer.write_scalars(step + 1, {f'benchmark/{k}': v for k, v in benchmark.items()})
          record.end_epoch(step + 1, state, entry, hint,  # refuses a non-finite state
                           lambda: space.save(workdir, alphas, genotype))
          draw = epoch_plots_due(epoch, config.search.plot_every, config.search.epochs)
          if draw and search.spec.problem.has_audience:
            _draw_explanations(search.spec, state, pictured, mesh, info, is_chief,
                               os.path.join(plots, f'epoch{epoch:03d}_explanations.png'),
                               f'epoch {epoch}: explanations of fixed validation images')
          if draw and is_chief:
            space.draw(alphas, genotype, plots, f'epoch{epoch:03d}_', f'epoch {epoch}')
            visualize.draw_alpha_trajectory(history, os.path.join(plots, 'alphas_trajectory.png'),
                                            row_labels=space.row_labels, ops=space.ops,
                                            names=space.alpha_names)
            visualize.draw_history(history, os.path.join(plots, 'history.png'),
                                   f'{info.name}: search history')
          if is_chief:
            writer.write_texts(step + 1, {'genotype': space.describe(genotype)})
            m = entry['metrics']
            progress.write(
                f'epoch {epoch}/{config.search.epochs} step {step + 1}: explainer train '
                f'{m.get("explainer_train_loss", np.nan):.3f} / acc '
                f'{m.get("explainer_train_acc", np.nan):.3f}, val '
                f'{m.get("explainer_val_loss", np.nan):.3f} / '
                f'{m.get("explainer_val_acc", np.nan):.3f}; audience val '
                f'{m.get("audience_val_loss", np.nan):.3f} / '
                f'{m.get("audience_val_acc", np.nan):.3f}; |grad A| '
                f'{m.get("alpha_grad_norm", np.nan):.3g} | {space.describe(genotype)}'
                + (f' | benchmark {benchmark}' if benchmark is not None else ''))
        elif (step + 1) % config.search.checkpoint_every == 0:
          record.save(step + 1, state, hint)
  except checkpoint.NonFiniteError as error:
    record.stop_non_finite(writer, error, total_steps, {
        'genotype': history[-1]['genotype'] if history else None,
        'final_metrics': history[-1]['metrics'] if history else {}})
    raise
  finally:
    if ticker is not None:
      ticker.done()
    compiles.__exit__(None, None, None)
    progress.close()
    prefetch.close()
    writer.flush()  # every event so far on disk, whatever ends the loop (Ctrl-C leaves at once)

  finished = int(state.step) >= total_steps
  record.finish(state, hint)
  genotype = space.derive(state.alphas)
  summary = {
      'genotype': genotype.to_json_dict(),
      'finished': finished, 'step': int(state.step), 'total_steps': total_steps,
      'epochs': config.search.epochs, 'dataset': info.name, 'space': space.name,
      'mode': config.search.mode,
      'gamma': config.search.gamma, 'split_class_counts': split_counts,
      'search_time_s': record.elapsed_before + time.time() - started,
      'final_metrics': history[-1]['metrics'] if history else {},
      # Means over the last epoch's validation batches (the whole val half, once) of the
      # look-ahead weights E', W'.
      'final_explainer_val_acc': history[-1]['metrics'].get('explainer_val_acc') if history
                                 else None,
      'final_audience_val_acc': history[-1]['metrics'].get('audience_val_acc') if history
                                else None,
      **space.summary(genotype, info.num_classes),
  }
  if table is not None:
    summary['benchmark'] = spaces.look_up(table, genotype)
    note = spaces.missing_note(genotype, summary['benchmark'])
    if note:
      summary['benchmark_missing'] = note
  if is_chief:
    space.save(workdir, state.alphas, genotype)
    space.draw(state.alphas, genotype, plots, '', 'final')
    writers.write_json_atomic(os.path.join(workdir, 'summary.json'), summary, indent=1)
  writer.flush()
  writer.close()
  return summary


def epoch_plots_due(epoch: int, plot_every: int, epochs: int) -> bool:
  """Whether the end of `epoch` (1-based) draws the epoch plots: every `plot_every`-th epoch
  and the search's last; never with `plot_every` 0 (the final α and cell are drawn regardless)."""
  return plot_every > 0 and (epoch % plot_every == 0 or epoch == epochs)


def _draw_explanations(spec, state, batch, mesh, info, is_chief, path, title, count=6):
  """`plots/epochNNN_explanations.png`: the image, δ' and the audience's input."""
  inputs = parallel.shard_batch(batch, mesh)
  delta, seen = lease.explain_batch(spec, state, inputs['image'], inputs['label'])
  arrays = (inputs['image'], delta, seen)
  if jax.process_count() > 1:  # every process takes part in the gather
    from jax.experimental import multihost_utils
    arrays = multihost_utils.process_allgather(arrays, tiled=True)
  if is_chief:
    images, delta, seen = (np.asarray(jax.device_get(a))[:count] for a in arrays)
    visualize.draw_explanations(images, delta, seen, info.mean, info.std, path, title)
