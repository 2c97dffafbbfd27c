"""`lease-compare-grads`: exact against approximate hypergradients along a search.

  lease-compare-grads --config=configs/compare_hypergrads_cifar10.py --workdir=runs/compare \
      --config.data.data_dir=/tmp/cifar10-jpeg

1. A search in `config.search.mode` runs from the config's initial state; its state at
   `compare.points` points, `compare.every` steps apart, is kept (`state_<step>.pkl`).
2. Every setting of `compare.settings` (`hypergrad_study.parse_setting`: exact, hvp, fd_<r>,
   first_order, official_sign, darts2_...) computes ∇_A O_A at every kept state, with the step's
   own batches and δ0, in its own process (so its compile time, run time and peak memory are its
   own). A finished setting's result is kept (`setting_<name>.json`): the same command resumes.
3. Each setting against its reference, per term: `compare.md`, `compare.csv`, `compare.json`,
   `compare.png` (`hypergrad_study.write_report`).

A setting whose process fails or passes `compare.timeout_s` is reported as such (with its exit
status), not dropped; the reference then falls back to `hvp`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lease_jax import hypergrad_study as study


def run_settings(config, workdir: str, settings: list[study.Setting], points: list[int],
                 config_args: list[str]) -> dict:
  """Each setting in its own process (skipping those whose result is kept); {name: result}."""
  results = {}
  for setting in settings:
    path = os.path.join(workdir, f'setting_{setting.name}.json')
    if not os.path.exists(path):
      print(f'measuring {setting.name} ...', flush=True)
      args = [sys.executable, '-m', 'lease_jax.compare', f'--workdir={workdir}',
              f'--child_setting={setting.name}', *config_args]
      try:
        done = subprocess.run(args, timeout=config.compare.timeout_s)
        failed = None if done.returncode == 0 else f'exit status {done.returncode}'
      except subprocess.TimeoutExpired:
        failed = f'did not finish in {config.compare.timeout_s} s'
      if failed:
        print(f'  {setting.name}: {failed}', flush=True)
        results[setting.name] = {'setting': setting.name, 'failed': failed}
        continue
    with open(path) as f:
      results[setting.name] = json.load(f)
    r = results[setting.name]
    print(f'  {setting.name}: compile {r["compile_s"]:.1f} s, run {r["run_s"]:.2f} s, peak '
          f'{r["peak_rss_gib"]:.2f} GiB', flush=True)
  return results


def _define_flags():
  from absl import flags
  from ml_collections import config_flags

  from lease_jax import cli_utils
  config_flags.DEFINE_config_file(
      'config', cli_utils.config_path('compare_hypergrads'), 'Experiment config.',
      lock_config=True)
  flags.DEFINE_string('workdir', 'runs/compare', 'Output directory (resumable).')
  flags.DEFINE_string('child_setting', '', 'Internal: measure one setting in this process.')


def _main(argv):
  del argv
  from absl import flags

  from lease_jax import builders, cli_utils, harness, writers
  config, workdir = flags.FLAGS.config, cli_utils.path_flag(flags.FLAGS.workdir)
  cli_utils.setup_jax(config)
  # Comparisons at full float32 precision: accelerators' default (TF32 matmuls on A100/H100)
  # would blur the differences measured here.
  import jax
  jax.config.update('jax_default_matmul_precision', 'highest')
  with cli_utils.one_line_errors('lease-compare-grads'):
    harness.check_workdir(workdir)
    builders.check_config(config, 'search')
    if 'compare' not in config:
      raise cli_utils.UserError("the config has no 'compare' block (e.g. "
                                "configs/compare_hypergrads.py)")
    settings = study.check_compare_block(config)
    os.makedirs(workdir, exist_ok=True)
    points = study.comparison_points(config)
    if flags.FLAGS.child_setting:
      setting = study.parse_setting(flags.FLAGS.child_setting)
      writers.write_json_atomic(os.path.join(workdir, f'setting_{setting.name}.json'),
                                study.measure_setting(config, workdir, setting, points))
      return
    study.run_trajectory(config, workdir)
    config_args = [a for a in sys.argv[1:] if a.startswith('--config')]
    results = run_settings(config, workdir, settings, points, config_args)
    command = 'lease-compare-grads ' + ' '.join(sys.argv[1:])
    study.write_report(config, workdir, points, settings, results, command)
  print(open(os.path.join(workdir, 'compare.md')).read())


def main():
  from lease_jax import cli_utils
  cli_utils.run_app(_define_flags, _main, 'lease-compare-grads')


if __name__ == '__main__':
  sys.exit(main())
