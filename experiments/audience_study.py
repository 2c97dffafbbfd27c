"""Which explanation setting lets the audience learn *from* the explanation? (DESIGN.md §1.3)

  python experiments/audience_study.py --dataset=digits --workdir=experiments/results/audience_study
  python experiments/audience_study.py --dataset=cifar10 --data_dir=/tmp/cifar10-jpeg \
      --workdir=experiments/results/audience_study
  python experiments/audience_study.py --report --workdir=experiments/results/audience_study
  # the conclusion on more seeds (issue 25): the clean control, the default, the paper-literal
  # and the official-code settings, seeds 1-3, each with its shuffled control
  python experiments/audience_study.py --dataset=cifar10 --data_dir=/tmp/cifar10-jpeg \
      --workdir=experiments/results/audience_study \
      --settings=label_zero_normsal,paper_literal,official_code --seeds=1,2,3

For each explanation setting (`SETTINGS`), one search of `--steps` iterations from the same seed on
the same batches, in which every level learns as in `lease-search` (E's real step, a fresh δ'
from the new E, W's real step on a(δ', x) = m(δ') ⊙ x). A follows the first-order hypergradient
during these steps, identically for every setting: A's Adam steps (≤ 3e-4 each) barely move the
explainer in this budget, and the second-order chain for every step of every setting would cost
one compilation of the whole chain per setting. Beside the audience, two control audiences train
on the same batches in the same run:

  clean     on x itself: what the audience learns without any explanation (one run per dataset);
  shuffled  on x ⊙ m' where m' is the setting's own weight map m randomly permuted over the
            batch's pixels: the same distribution of weights, no information; what the
            explanation adds over noise is the gap between the setting and this control.

Measured per setting (the last quarter of the steps, or at the final state):
  audience_val_acc         (a) the audience's accuracy on the clean validation half
  shuffled_val_acc         the shuffled control's
  explainer_share          (b) ‖δ' − δ0‖ / ‖δ'‖: how much of δ' comes from the explainer
  step_over_eps            mean |δ' − δ0| / ε
  audience_term_batch_cos  (c) cosine of the audience terms of ∇_A (the exact `hvp` chain) on two
                           independent (train, val, δ0) draws at the final state: signal vs noise
  audience_explainer_cos   (d) cosine of the audience and explainer terms (mean over the draws)
  top10_share              (e) the share of Σ|m| in the top 10% of each example's elements (0.10:
                           uniform, no selection; 1: all weight on a tenth of the pixels)
  saturated                the fraction of elements at ≥ 99% of their example's max |m| (a
                           saturated map ≈ 1 everywhere lets the audience see the clean image)

Each (dataset, setting, seed) runs in its own process (a process that compiles every setting's
programs runs out of memory maps) and writes its own JSON file under `<workdir>/rows/`
(`<dataset>__<setting>.json` for the first study's seed 0, `..._seed<k>.json` for `--seeds`): a
rerun skips what is finished, so the study resumes after an interruption. `--report` (also run
at the end) writes `audience_study.md`, `.csv` and `.png` from every finished row, and where a
setting has rows of two or more seeds, `audience_seeds.md` / `.csv`: per setting the mean and
standard error over its seeds of the audience's accuracy, of its shuffled control's, and of
their gap (what the explanation adds over its shuffled map), each seed's gap paired within its
own run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np

# Each setting: the `explanation` config fields it overrides.
SETTINGS = {
    # The paper taken literally: soft target, random start, one raw ascent step, δ' ⊙ x.
    'paper_literal': dict(target='soft', start='random', step_size=1.0, sign=False, clip=False,
                          audience_input='product'),
    'soft_random_big_step': dict(target='soft', start='random', step_size=100.0, sign=False,
                                 clip=False, audience_input='product'),
    'soft_random_big_step_saliency': dict(target='soft', start='random', step_size=100.0,
                                          sign=False, clip=False, audience_input='saliency'),
    'soft_random_big_step_normsal': dict(target='soft', start='random', step_size=100.0,
                                         sign=False, clip=False,
                                         audience_input='normalized_saliency'),
    'label_random_product': dict(target='label', start='random', step_size=1.0, sign=False,
                                 clip=False, audience_input='product'),
    'label_zero_product': dict(target='label', start='zero', step_size=1.0, sign=False,
                               clip=False, audience_input='product'),
    'label_zero_saliency': dict(target='label', start='zero', step_size=1.0, sign=False,
                                clip=False, audience_input='saliency'),
    'label_zero_saliency_big_step': dict(target='label', start='zero', step_size=10.0,
                                         sign=False, clip=False, audience_input='saliency'),
    'label_zero_clip_saliency_big_step': dict(target='label', start='zero', step_size=10.0,
                                              sign=False, clip=True, audience_input='saliency'),
    'label_zero_normsal': dict(target='label', start='zero', step_size=1.0, sign=False,
                               clip=False, audience_input='normalized_saliency'),
    'label_random_normsal': dict(target='label', start='random', step_size=1.0, sign=False,
                                 clip=False, audience_input='normalized_saliency'),
    # The official code: label target, one detached sign step of ε (step_size is in units of ε
    # for sign steps) from a random start, clipped.
    'official_code': dict(target='label', start='random', step_size=1.0, sign=True, clip=True,
                          audience_input='product'),
    'official_code_saliency': dict(target='label', start='random', step_size=1.0, sign=True,
                                   clip=True, audience_input='saliency'),
}
CONTROL = 'control_clean'
COLUMNS = ('dataset', 'setting', 'seed', 'audience_val_acc', 'shuffled_val_acc', 'explainer_val_acc',
           'explainer_share', 'step_over_eps', 'audience_term_batch_cos',
           'audience_explainer_cos', 'audience_term_norm', 'explainer_term_norm', 'top10_share',
           'saturated', 'steps', 'seconds')


def base_config(dataset: str, data_dir: str, steps: int, seed: int = 0):
  """The study's search: a 3-cell C=8 supernet, a width-16 ResNet-18 audience, batch 32."""
  from lease_jax.configs import default
  config = default.get_config()
  config.seed = seed
  config.explainer.layers = 3
  config.explainer.channels = 8
  config.audience.width = 16
  config.search.batch_size = 32
  config.search.mode = 'first_order'
  if dataset == 'cifar10':
    config.data.source, config.data.name, config.data.data_dir = 'image_folder', 'cifar10', data_dir
    config.data.max_examples = 10_000  # a class-balanced 10k: 5k train, 5k val
    config.data.augment, config.data.padding = 'crop_flip', 4
  # The schedules span exactly the study's steps.
  config.search.epochs = 1
  return config


def row_name(dataset: str, setting: str, seed: int) -> str:
  """The row file of (dataset, setting, seed); seed 0's is the first study's name."""
  return f'{dataset}__{setting}' + (f'__seed{seed}' if seed else '') + '.json'


def run_setting(dataset: str, setting: str, data_dir: str, steps: int, eval_examples: int,
                seed: int = 0):
  import jax
  import jax.numpy as jnp

  from lease_jax import builders, data, hypergrad as hg, lease, optim

  config = base_config(dataset, data_dir, steps, seed)
  control = setting == CONTROL
  if not control:
    options = dict(SETTINGS[setting])
    for key, value in options.items():
      config.explanation[key] = value
  info, source, _ = data.load_sources(config.data)
  train, val = builders.search_streams(config, info, source)
  search = builders.build_search(config, info, steps)  # schedules over `steps` iterations
  spec = search.spec
  problem = spec.problem
  state = search.init_state(config.seed)
  tx = problem.audience_tx
  clip = spec.audience_clip
  eps_mean = float(np.mean(problem.explanation.epsilon))

  @jax.jit
  def audience_step(W, opt_state, inputs, labels):
    _, _, grad = hg.audience_grads(problem, W, inputs, labels)
    return hg.apply_update(tx, optim.clip_by_global_norm(grad, clip), opt_state, W)

  @jax.jit
  def explanation_probe(before, after, images, labels, key):
    """The real step's δ' (as `lease.real_steps` draws it), its map m and the statistics."""
    _, start_key = lease.step_keys(before)
    delta0 = hg.explanation_start(start_key, images.shape, problem.explanation, images.dtype)
    raw = hg.ascent_step(problem, after.explainer, after.alphas, images, labels, delta0)
    delta, _ = hg.audience_inputs(problem, raw, images)
    m = hg.importance(problem, delta)
    shuffled = jax.random.permutation(key, m.ravel()).reshape(m.shape)
    flat = jnp.abs(m).reshape(m.shape[0], -1)
    top = jnp.sort(flat, axis=1)[:, ::-1][:, :max(1, flat.shape[1] // 10)]
    peak = jnp.max(flat, axis=1, keepdims=True)
    stats = {
        'explainer_share': jnp.linalg.norm(delta - delta0) / jnp.maximum(
            jnp.linalg.norm(delta), 1e-30),
        'step_over_eps': jnp.mean(jnp.abs(delta - delta0)) / eps_mean,
        'top10_share': jnp.mean(top.sum(1) / jnp.maximum(flat.sum(1), 1e-30)),
        'saturated': jnp.mean(flat >= 0.99 * peak),
    }
    return shuffled * images, stats

  @jax.jit
  def val_correct(W, images, labels, mask):
    logits = problem.audience_apply(W, images) if problem.audience_apply else None
    return jnp.sum((jnp.argmax(logits, -1) == labels) * mask)

  @jax.jit
  def explainer_correct(E, A, images, labels, mask):
    logits = problem.explainer_apply(E, A, images)
    return jnp.sum((jnp.argmax(logits, -1) == labels) * mask)

  W0 = state.audience
  controls = {'shuffled': (W0, tx.init(W0))} if not control else {'clean': (W0, tx.init(W0))}
  step_fn = lease.make_step(spec, jit_whole=False)
  tail = max(1, steps // 4)
  stats_sum, stats_n = {}, 0
  started = time.time()
  for step in range(steps):
    tb, vb = builders.to_device(train.batch(step)), builders.to_device(val.batch(step))
    if control:
      W, opt = controls['clean']
      controls['clean'] = audience_step(W, opt, tb['image'], tb['label'])
      continue
    before = state
    state, _ = step_fn(state, tb, vb, split_terms=False)
    key = jax.random.PRNGKey(10_000 + step)  # the shuffled map's permutation
    inputs, stats = explanation_probe(before, state, tb['image'], tb['label'],
                                      jax.random.fold_in(key, seed) if seed else key)
    W, opt = controls['shuffled']
    controls['shuffled'] = audience_step(W, opt, inputs, tb['label'])
    if step >= steps - tail:
      stats = jax.device_get(stats)
      for k, v in stats.items():
        stats_sum[k] = stats_sum.get(k, 0.0) + float(v)
      stats_n += 1
    if (step + 1) % 25 == 0:
      print(f'  {setting} step {step + 1}/{steps} ({time.time() - started:.0f} s)', flush=True)

  # Clean validation accuracy of every audience on the same `eval_examples` of the val half.
  evaluation = data.BatchStream(source, val.indices[:eval_examples], 128, 0,
                                data.Transform('none', info.mean, info.std), shuffle=False)

  def accuracy(fn, *params):
    correct = count = 0.0
    for k in range(evaluation.steps_per_epoch):
      batch = evaluation.batch(k)
      correct += float(fn(*params, jnp.asarray(batch['image']), jnp.asarray(batch['label']),
                          jnp.asarray(batch['mask'])))
      count += float(batch['mask'].sum())
    return correct / count

  row = {'dataset': dataset, 'setting': setting, 'seed': seed, 'steps': steps}
  if control:
    row['audience_val_acc'] = accuracy(val_correct, controls['clean'][0])
    row['seconds'] = time.time() - started
    return row
  row['audience_val_acc'] = accuracy(val_correct, state.audience)
  row['shuffled_val_acc'] = accuracy(val_correct, controls['shuffled'][0])
  row['explainer_val_acc'] = accuracy(explainer_correct, state.explainer, state.alphas)
  row.update({k: v / stats_n for k, v in stats_sum.items()})

  # (c), (d): the audience term of the exact (hvp) hypergradient on two independent draws.
  terms = []
  for draw in (steps, steps + 1):
    tb, vb = builders.to_device(train.batch(draw)), builders.to_device(val.batch(draw))
    grads = hg.hypergradient(
        'hvp', problem, E=state.explainer, A=state.alphas, W=state.audience,
        explainer_state=state.explainer_opt_state, audience_state=state.audience_opt_state,
        train=tb, val=vb, key=jax.random.PRNGKey(20_000 + draw), split_terms=True)
    flat = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64))
                                        for x in jax.tree.leaves(tree)])
    terms.append((flat(grads.audience), flat(grads.explainer)))
  row['audience_term_batch_cos'] = _cosine(terms[0][0], terms[1][0])
  row['audience_explainer_cos'] = float(np.mean([_cosine(a, e) for a, e in terms]))
  row['audience_term_norm'] = float(np.mean([np.linalg.norm(a) for a, _ in terms]))
  row['explainer_term_norm'] = float(np.mean([np.linalg.norm(e) for _, e in terms]))
  row['seconds'] = time.time() - started
  row['options'] = {k: (v.item() if hasattr(v, 'item') else v)
                    for k, v in config.explanation.to_dict().items()}
  return row


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
  na, nb = np.linalg.norm(a), np.linalg.norm(b)
  return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float('nan')


SEED_COLUMNS = ('dataset', 'setting', 'seeds', 'audience_val_acc', 'audience_val_acc_se',
                'shuffled_val_acc', 'shuffled_val_acc_se', 'gap', 'gap_se')


def seed_rows(rows: list[dict]) -> list[dict]:
  """Per (dataset, setting) with rows of two or more seeds: the mean and standard error
  (std with ddof 1 / sqrt(n)) of the audience's accuracy, its shuffled control's and their
  paired gap (the clean control has no shuffled control: its gap is empty)."""
  groups: dict[tuple[str, str], list[dict]] = {}
  for row in rows:
    groups.setdefault((row['dataset'], row['setting']), []).append(row)
  out = []
  for (dataset, setting), group in groups.items():
    if len({r.get('seed', 0) for r in group}) < 2:
      continue
    entry = {'dataset': dataset, 'setting': setting,
             'seeds': ' '.join(str(seed) for seed in sorted(r.get('seed', 0) for r in group))}
    series = {'audience_val_acc': [r['audience_val_acc'] for r in group]}
    if all('shuffled_val_acc' in r for r in group):
      series['shuffled_val_acc'] = [r['shuffled_val_acc'] for r in group]
      series['gap'] = [r['audience_val_acc'] - r['shuffled_val_acc'] for r in group]
    for name, values in series.items():
      values = np.asarray(values, np.float64)
      entry[name] = float(values.mean())
      entry[name + '_se'] = float(values.std(ddof=1) / np.sqrt(len(values)))
    out.append(entry)
  return out


def report(workdir: str) -> None:
  """The table (md, csv) and the plot of every finished row; the seeds' table where a setting
  has two or more seeds."""
  rows_dir = os.path.join(workdir, 'rows')
  rows = [json.load(open(os.path.join(rows_dir, f))) for f in sorted(os.listdir(rows_dir))
          if f.endswith('.json')] if os.path.isdir(rows_dir) else []
  if not rows:
    print('no finished rows yet')
    return
  order = [CONTROL] + list(SETTINGS)
  rows.sort(key=lambda r: (r['dataset'], order.index(r['setting']), r.get('seed', 0)))
  for row in rows:
    row.setdefault('seed', 0)  # the first study's rows are seed 0
  seeds = seed_rows(rows)
  if seeds:
    with open(os.path.join(workdir, 'audience_seeds.csv'), 'w', newline='') as f:
      writer = csv.DictWriter(f, SEED_COLUMNS)
      writer.writeheader()
      writer.writerows(seeds)
    cells = lambda r: [r['dataset'], r['setting'], r['seeds']] + [
        f'{r[c]:.3f} ± {r[c + "_se"]:.3f}' if c in r else '' for c in
        ('audience_val_acc', 'shuffled_val_acc', 'gap')]
    table = ['| dataset | setting | seeds | audience val acc | shuffled control | gap |',
             '|---|---|---|---|---|---|'] + ['| ' + ' | '.join(cells(r)) + ' |' for r in seeds]
    with open(os.path.join(workdir, 'audience_seeds.md'), 'w') as f:
      f.write('Mean ± standard error over the seeds (gap: the audience minus its shuffled '
              'control, paired within each run).\n\n' + '\n'.join(table) + '\n')
  with open(os.path.join(workdir, 'audience_study.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, COLUMNS, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
  fmt = lambda v: '' if v is None else (f'{v:.3f}' if isinstance(v, float) else str(v))
  lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
  lines += ['| ' + ' | '.join(fmt(r.get(c)) for c in COLUMNS) + ' |' for r in rows]
  with open(os.path.join(workdir, 'audience_study.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  datasets = sorted({r['dataset'] for r in rows})
  fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 6), squeeze=False)
  for ax, dataset in zip(axes[0], datasets):
    mine = [r for r in rows if r['dataset'] == dataset and r['setting'] != CONTROL
            and r['seed'] == 0]  # the first study's seed; the seeds' table has the rest
    clean = [r for r in rows if r['dataset'] == dataset and r['setting'] == CONTROL
             and r['seed'] == 0]
    y = np.arange(len(mine))
    ax.barh(y + 0.2, [r['audience_val_acc'] for r in mine], 0.4, label='audience on a(δ\', x)')
    ax.barh(y - 0.2, [r.get('shuffled_val_acc', np.nan) for r in mine], 0.4,
            label='control: shuffled weights', color='0.7')
    if clean:
      ax.axvline(clean[0]['audience_val_acc'], color='g', ls='--', label='control: clean x')
    ax.axvline(0.1, color='r', ls=':', label='chance')
    ax.set_yticks(y, [r['setting'] for r in mine], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel('audience validation accuracy (clean images)')
    ax.set_title(dataset)
    ax.legend(fontsize=7, loc='lower right')
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'audience_study.png'), dpi=110)
  print(f'wrote {len(rows)} rows to {workdir}/audience_study.md')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--dataset', choices=('digits', 'cifar10'), default='digits')
  parser.add_argument('--data_dir', default='', help='the CIFAR-10 (JPEG) image folder root')
  parser.add_argument('--steps', type=int, default=0, help='search steps (0: 200 / 300)')
  parser.add_argument('--eval_examples', type=int, default=1000)
  parser.add_argument('--settings', default='', help='comma-separated subset of the settings')
  parser.add_argument('--report', action='store_true', help='only write the report')
  parser.add_argument('--seeds', default='0', help='comma-separated seeds (0: the first study)')
  parser.add_argument('--one', default='', help=argparse.SUPPRESS)  # a child: one setting
  args = parser.parse_args(argv)
  if args.report:
    report(args.workdir)
    return 0
  steps = args.steps or (200 if args.dataset == 'digits' else 300)
  try:
    seeds = [int(s) for s in args.seeds.split(',') if s]
  except ValueError:
    seeds = []
  if not seeds or min(seeds) < 0:
    print(f'--seeds={args.seeds!r}; accepted: comma-separated whole numbers >= 0',
          file=sys.stderr)
    return 2
  if args.one:
    from lease_jax import cli_utils
    cli_utils.setup_jax()
    path = os.path.join(args.workdir, 'rows', row_name(args.dataset, args.one, seeds[0]))
    row = run_setting(args.dataset, args.one, args.data_dir, steps, args.eval_examples,
                      seeds[0])
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(row, f, indent=1)
    os.replace(tmp, path)
    print(f'{args.dataset} {args.one}: ' + ', '.join(
        f'{k} {v:.3f}' for k, v in row.items() if isinstance(v, float)), flush=True)
    return 0
  names = [CONTROL] + (args.settings.split(',') if args.settings else list(SETTINGS))
  unknown = [n for n in names if n != CONTROL and n not in SETTINGS]
  if unknown:
    print(f'unknown settings {unknown}; accepted: {", ".join(SETTINGS)}', file=sys.stderr)
    return 2
  os.makedirs(os.path.join(args.workdir, 'rows'), exist_ok=True)
  for seed in seeds:
    for name in names:
      path = os.path.join(args.workdir, 'rows', row_name(args.dataset, name, seed))
      if os.path.exists(path):
        print(f'{args.dataset} {name} seed {seed}: finished, skipped', flush=True)
        continue
      print(f'{args.dataset} {name} seed {seed}: running {steps} steps', flush=True)
      child = subprocess.run([sys.executable, os.path.abspath(__file__), f'--one={name}',
                              f'--dataset={args.dataset}', f'--data_dir={args.data_dir}',
                              f'--steps={steps}', f'--eval_examples={args.eval_examples}',
                              f'--workdir={args.workdir}', f'--seeds={seed}'])
      if child.returncode:
        print(f'{args.dataset} {name} seed {seed}: failed (exit {child.returncode})', flush=True)
  report(args.workdir)
  return 0


if __name__ == '__main__':
  sys.exit(main())
