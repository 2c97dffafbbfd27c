"""Experiment configs: every file loads and passes the checks; command-line overrides work."""

import glob
import os

import pytest
from absl import flags

from lease_jax import builders, cli_utils, harness

CONFIGS = sorted(glob.glob(os.path.join(cli_utils.CONFIG_DIR, '*.py')))
NAMES = [os.path.basename(p)[:-3] for p in CONFIGS if not p.endswith('__init__.py')]


def _parse(name, *overrides):
  return cli_utils.load_config(cli_utils.config_path(name), overrides)


@pytest.mark.parametrize('name', NAMES)
def test_every_config_loads_and_checks(name):
  builders.check_config(_parse(name))


def test_paper_settings():
  search = _parse('search_cifar10')
  assert (search.explainer.layers, search.explainer.channels, search.search.batch_size,
          search.search.epochs, search.search.gamma, search.audience.width,
          search.data.train_portion) == (8, 16, 64, 50, 1.0, 64, 0.5)
  assert _parse('search_cifar100').data.name == 'cifar100'
  darts2, darts1 = _parse('darts_2nd'), _parse('darts_1st')
  assert (darts2.search.gamma, darts2.search.mode) == (0.0, 'finite_difference')
  assert (darts1.search.gamma, darts1.search.mode) == (0.0, 'first_order')
  cifar = _parse('eval_cifar10').train
  assert (cifar.layers, cifar.channels, cifar.batch_size, cifar.epochs, cifar.auxiliary_weight,
          cifar.drop_path_prob, cifar.cutout) == (20, 36, 96, 600, 0.4, 0.2, 16)
  imagenet = _parse('eval_imagenet').train
  assert (imagenet.network, imagenet.layers, imagenet.channels,
          imagenet.label_smoothing) == ('imagenet', 14, 48, 0.1)


def test_command_line_overrides():
  config = _parse('default', '--config.search.gamma=0.5', '--config.explainer.layers=3',
                  '--config.explanation.target=label', '--config.data.data_dir=/data')
  assert config.search.gamma == 0.5 and config.explainer.layers == 3
  assert config.explanation.target == 'label' and config.data.data_dir == '/data'
  assert _parse('default').search.gamma == 1.0


def test_unknown_field_is_refused():
  with pytest.raises((KeyError, AttributeError, flags.Error)):
    _parse('default', '--config.search.gammma=0.5')


@pytest.mark.parametrize('field, value, message', [
    ('search.mode', 'exactly', "search.mode 'exactly'; accepted: exact, hvp"),
    ('explanation.target', 'hard', "explanation.target 'hard'; accepted: soft, label"),
    ('search.gamma', -1.0, 'search.gamma = -1.0; must be >= 0'),
    ('parallel.batch_norm', 'sync', "parallel.batch_norm 'sync'"),
    ('train.network', 'mobile', "train.network 'mobile'"),
    ('explainer.steps', 0, 'explainer.steps = 0; must be >= 1'),
    ('audience.blocks_per_stage', 0, 'audience.blocks_per_stage = 0; must be >= 1'),
    ('data.padding', -1, 'data.padding = -1; must be >= 0'),
    ('search.checkpoint_every', 0, 'search.checkpoint_every = 0; must be >= 1'),
    ('search.plot_every', -1, 'search.plot_every = -1; must be >= 0'),
    ('train.checkpoint_every', 0, 'train.checkpoint_every = 0; must be >= 1'),
])
def test_bad_values_name_the_field(field, value, message):
  config = _parse('default')
  section, key = field.split('.')
  with config.unlocked():
    config[section][key] = value
  with pytest.raises(cli_utils.UserError, match=message.replace('(', r'\(')):
    builders.check_config(config)


def test_workdir_that_cannot_hold_a_run_is_refused(tmp_path):
  with pytest.raises(cli_utils.UserError, match='--workdir is empty'):
    harness.check_workdir('')
  (tmp_path / 'file').write_text('x')
  with pytest.raises(cli_utils.UserError, match='is a file'):
    harness.check_workdir(str(tmp_path / 'file'))
  harness.check_workdir(str(tmp_path / 'new' / 'run'))  # created later, parent writable
  assert not (tmp_path / 'new').exists()  # checking writes nothing
