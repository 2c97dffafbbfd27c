"""`lease-train`: architecture evaluation, a genotype's network trained from scratch.

  lease-train --config=configs/eval_cifar10.py --genotype=DARTS_V2 --workdir=runs/eval [--config.field=value]

--genotype is a registry name (`lease-genotype list`) or a genotype JSON file (a search's
`genotype.json`); without it, `config.train.genotype`. Reports the test error and the parameter
count (with and without the auxiliary head) and writes them to `workdir/summary.json`.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from lease_jax import cli_utils

FLAGS = flags.FLAGS


def _define_flags():
  config_flags.DEFINE_config_file('config', cli_utils.config_path('default'),
                                  'Experiment config file.', lock_config=True)
  flags.DEFINE_string('genotype', None, 'Registry name or genotype JSON file.')
  flags.DEFINE_string('workdir', 'runs/train', 'Where training writes (and resumes from).')


def _main(argv):
  del argv
  cli_utils.setup_jax(FLAGS.config)
  from lease_jax import builders, evaluate, search_space
  with cli_utils.one_line_errors('lease-train'):
    builders.check_config(FLAGS.config, 'train')
    if FLAGS.genotype is not None and not FLAGS.genotype.strip():
      raise search_space.GenotypeError('--genotype is empty; give a registry name (lease-genotype '
                                       'list) or a genotype JSON file, or omit the flag')
    genotype = search_space.load_genotype(
        cli_utils.path_flag(FLAGS.genotype or FLAGS.config.train.genotype))
    workdir = cli_utils.path_flag(FLAGS.workdir)
    summary = evaluate.train_and_evaluate(FLAGS.config, genotype, workdir)
  print(f"training {'finished' if summary['finished'] else 'stopped'} at step "
        f"{summary['step']}/{summary['total_steps']}: test error {summary['test_error']:.4f}, "
        f"{summary['params_no_aux'] / 1e6:.3f} M parameters "
        f"({summary['params'] / 1e6:.3f} M with the auxiliary head); {workdir}/summary.json")


def main():
  cli_utils.run_app(_define_flags, _main, 'lease-train')


if __name__ == '__main__':
  sys.exit(main())
