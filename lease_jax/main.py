"""`lease-search`: run (or resume) a search from a config file.

  lease-search --config=configs/search_cifar10.py --workdir=runs/cifar10 [--config.field=value]

With no --config, the offline quick search on the packaged digits (configs/default.py).
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
  flags.DEFINE_string('workdir', 'runs/default', 'Where the search writes (and resumes from).')


def _main(argv):
  del argv
  cli_utils.setup_jax(FLAGS.config)
  from lease_jax import search
  with cli_utils.one_line_errors('lease-search'):
    workdir = cli_utils.path_flag(FLAGS.workdir)
    summary = search.train_and_evaluate(FLAGS.config, workdir)
  print(f"search {'finished' if summary['finished'] else 'stopped'} at step "
        f"{summary['step']}/{summary['total_steps']} in {summary['search_time_s']:.0f} s")
  print(f'genotype: {workdir}/genotype.json  summary: {workdir}/summary.json')


def main():
  cli_utils.run_app(_define_flags, _main, 'lease-search')


if __name__ == '__main__':
  sys.exit(main())
