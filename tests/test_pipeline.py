"""The tools researchers run: `lease-search` and `lease-train` end to end, exact resume after a
kill, and the one-line errors for bad input (nothing already saved is lost)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import TINY, run_cli, snapshot

from lease_jax import search, search_space

STEPS = 6


@pytest.fixture(scope='module')
def env(cli_env):
  return cli_env


def _search_args(workdir, *extra):
  return (f'--config={TINY}', f'--workdir={workdir}', f'--config.search.max_steps={STEPS}',
          *extra)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, env):
  workdir = tmp_path_factory.mktemp('search') / 'run'
  run_cli('main', *_search_args(workdir, '--config.search.plot_every=1'), env=env)
  return workdir


def test_search_writes_every_output(uninterrupted):
  workdir = uninterrupted
  for name in ('genotype.json', 'alphas.json', 'summary.json', 'history.jsonl', 'log.txt',
               'config.json', 'plots/alphas.png', 'plots/normal.png', 'plots/reduction.png',
               'plots/epoch001_alphas.png', 'plots/epoch002_normal.png',
               'plots/epoch001_explanations.png', 'plots/epoch002_explanations.png',
               'plots/alphas_trajectory.png', 'plots/history.png'):
    assert (workdir / name).exists(), name
  assert any(n.startswith('events.out.tfevents') for n in os.listdir(workdir))
  genotype = search_space.load_genotype(str(workdir / 'genotype.json'))
  alphas = search_space.load_alphas(str(workdir / 'alphas.json'))
  assert search_space.derive_genotype(alphas['alphas_normal'], alphas['alphas_reduce']) == genotype
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['step'] == STEPS and summary['finished']  # tiny: 2 epochs of 3 steps
  history = [json.loads(line) for line in (workdir / 'history.jsonl').read_text().splitlines()]
  assert [h['epoch'] for h in history] == [1, 2]
  assert history[-1]['genotype'] == genotype.to_json_dict()
  assert summary['cifar_eval_network']['params'] > summary['cifar_eval_network']['params_no_aux']
  assert summary['final_audience_val_acc'] == history[-1]['metrics']['audience_val_acc']
  # the split: every class in both halves (tiny: 48 digits, 24 + 24), logged and summarised
  counts = summary['split_class_counts']
  assert sum(counts['train']) == sum(counts['val']) == 24
  assert min(counts['train']) >= 2 and min(counts['val']) >= 2
  assert f"per class {counts['train']}" in (workdir / 'log.txt').read_text()
  assert os.listdir(workdir / 'checkpoints')


@pytest.mark.parametrize('name', ['lease_paper_literal', 'lease_official_code'])
def test_named_explanation_configs_run(tmp_path, env, name):
  from lease_jax import cli_utils
  workdir = tmp_path / name
  # the named config's explanation settings on tiny's sizes
  sizes = ('--config.data.max_examples=48', '--config.search.batch_size=8',
           '--config.explainer.channels=4', '--config.explainer.layers=1',
           '--config.explainer.impl=xla', '--config.audience.width=4',
           '--config.audience.blocks_per_stage=1',
           '--config.search.max_steps=2', '--config.search.checkpoint_every=2')
  run_cli('main', f'--config={cli_utils.config_path(name)}', f'--workdir={workdir}', *sizes,
       env=env)
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['step'] == 2
  config = json.loads((workdir / 'config.json').read_text())
  if name == 'lease_official_code':
    assert config['explanation']['sign'] and config['explanation']['target'] == 'label'
  else:
    assert config['explanation']['target'] == 'soft'
    assert config['explanation']['audience_input'] == 'product'


def test_killed_search_resumes_bitwise(uninterrupted, tmp_path, env):
  """SIGKILL once the first checkpoint exists, run the same command again: identical outputs."""
  workdir = tmp_path / 'run'
  cmd = [sys.executable, '-m', 'lease_jax.main', *_search_args(workdir)]
  process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  first = workdir / 'checkpoints' / '2'
  deadline = time.time() + 600
  while not first.exists() and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (workdir / 'summary.json').exists(), 'killed too late to test a resume'
  resumed = run_cli('main', *_search_args(workdir), env=env)
  assert 'resuming' in resumed.stdout
  for name in ('alphas.json', 'genotype.json'):
    assert (workdir / name).read_bytes() == (uninterrupted / name).read_bytes(), name
  # the epoch metrics too (the running sums are checkpointed), all but wall-clock fields
  assert _without_clock(workdir) == _without_clock(uninterrupted)


def _without_clock(workdir):
  history = [json.loads(line) for line in (workdir / 'history.jsonl').read_text().splitlines()]
  for entry in history:
    del entry['elapsed_s']
  summary = json.loads((workdir / 'summary.json').read_text())
  del summary['search_time_s']
  return history, summary


def test_stopped_search_continues_bitwise(uninterrupted, tmp_path, env):
  """A run stopped by max_steps and continued with a larger one equals the uninterrupted run."""
  workdir = tmp_path / 'run'
  run_cli('main', f'--config={TINY}', f'--workdir={workdir}', '--config.search.max_steps=3',
       env=env)
  run_cli('main', *_search_args(workdir), env=env)
  assert (workdir / 'alphas.json').read_bytes() == (uninterrupted / 'alphas.json').read_bytes()
  # tiny's plot_every = 0: no epoch plots, the final α and cell drawings only
  assert sorted(os.listdir(workdir / 'plots')) == [
      'alphas.png', 'normal.dot', 'normal.png', 'normal.svg', 'reduction.dot', 'reduction.png',
      'reduction.svg']


def test_epoch_plots_are_due_every_plot_every_epochs_and_at_the_last():
  due = lambda every: [e for e in range(1, 6) if search.epoch_plots_due(e, every, 5)]
  assert due(1) == [1, 2, 3, 4, 5]
  assert due(2) == [2, 4, 5]
  assert due(0) == []


def test_different_config_in_workdir_is_refused(uninterrupted, env):
  before = snapshot(uninterrupted)
  result = run_cli('main', *_search_args(uninterrupted, '--config.search.gamma=0.5'), env=env,
                check=False)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and 'different config' in lines[0] and 'search.gamma' in lines[0]
  assert snapshot(uninterrupted) == before


def test_train_end_to_end(tmp_path, env):
  import functools

  import jax

  from lease_jax.models import eval_network
  workdir = tmp_path / 'train'
  # 44 examples in batches of 8: five full batches and the epoch's partial batch of 4, kept as
  # DARTS's train.py keeps it (6 steps; 5 if it were dropped), its step a program of its own shape.
  result = run_cli('train_main', f'--config={TINY}', '--genotype=DARTS_V2', f'--workdir={workdir}',
                   '--config.data.max_examples=44', env=env)
  summary = json.loads((workdir / 'summary.json').read_text())
  assert 'test error' in result.stdout
  assert 0.0 <= summary['test_error'] <= 1.0 and summary['step'] == summary['total_steps'] == 6
  genotype = search_space.load_genotype('DARTS_V2')
  # tiny: NetworkCIFAR C=4, 2 cells, no auxiliary head, on 8x8x1 digits; counted from shapes.
  model = eval_network.NetworkCIFAR(genotype, 4, 10, 2, False)
  key = jax.random.PRNGKey(0)
  shapes = jax.eval_shape(functools.partial(model.init, train=True),
                          {'params': key, 'dropout': key}, jax.numpy.zeros((2, 8, 8, 1)))
  assert summary['params'] == summary['params_no_aux'] == eval_network.count_params(
      shapes['params'])
  assert (workdir / 'history.jsonl').exists() and os.listdir(workdir / 'checkpoints')
  # tiny has no auxiliary head: the objective with the head's share is the main loss
  last = json.loads((workdir / 'history.jsonl').read_text().splitlines()[-1])['train']
  assert last['train_loss_with_aux'] == pytest.approx(last['train_loss'])


@pytest.mark.parametrize('args, expected', [
    (('--config.data.source=image_folder', '--config.data.data_dir=/nonexistent/cifar'),
     "image folder '/nonexistent/cifar/train' does not exist"),
    (('--config.data.source=tfds', '--config.data.name=cifar11'),
     "data.name 'cifar11'"),
    (('--config.data.source=packaged', '--config.data.name=mnist'),
     "data.name 'mnist'"),
    (('--config.search.gammma=1',), 'search.gammma: no such config field'),
    (('--config.search.mode=exactly',), "mode 'exactly'"),
    (('--config.explainer.learning_rate=-0.1',), 'explainer.learning_rate = -0.1; must be > 0'),
    (('--config.search.keep_checkpoints=0',), 'search.keep_checkpoints = 0; must be >= 1'),
    (('--config.explanation.target=soft',), "start 'zero' with explanation.target 'soft'"),
])
def test_bad_input_is_one_line(tmp_path, env, args, expected):
  workdir = tmp_path / 'run'
  result = run_cli('main', f'--config={TINY}', f'--workdir={workdir}', *args, env=env, check=False)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
  assert expected in lines[0], lines[0]
  assert not (workdir / 'checkpoints').exists()


def test_malformed_genotype_is_one_line(tmp_path, env):
  bad = tmp_path / 'genotype.json'
  bad.write_text('{"normal": [["sep_conv_3x3", 0]], "normal_concat": [2, 3, 4, 5]}')
  result = run_cli('train_main', f'--config={TINY}', f'--genotype={bad}',
                f'--workdir={tmp_path / "train"}', env=env, check=False)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and str(bad) in lines[0], result.stderr


def test_empty_genotype_flag_is_one_line(tmp_path, env):
  result = run_cli('train_main', f'--config={TINY}', '--genotype=', f'--workdir={tmp_path / "t"}',
                env=env, check=False)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and '--genotype is empty' in lines[0]
  assert not (tmp_path / 't').exists()


def test_seed_launcher_reports_mean_and_std(tmp_path, env):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  workdir = tmp_path / 'seeds'
  result = subprocess.run(
      [sys.executable, os.path.join(root, 'experiments', 'run_seeds.py'), 'train', '--seeds=2',
       f'--workdir={workdir}', '--', f'--config={TINY}', '--genotype=DARTS_V2'],
      env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((workdir / 'seeds.json').read_text())
  assert report['seeds'] == [1, 2] and len(report['runs']) == 2
  errors = [run['test_error'] for run in report['runs']]
  assert abs(report['mean']['test_error'] - sum(errors) / 2) < 1e-12
  assert 'mean ± std' in (workdir / 'seeds.md').read_text()


def test_diverged_search_stops_without_saving_non_finite_values(tmp_path, env):
  workdir = tmp_path / 'run'
  result = run_cli('main', *_search_args(workdir, '--config.explainer.learning_rate=1e6',
                                      '--config.arch.learning_rate=1e6'), env=env, check=False)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 3, result.stderr[-2000:]
  assert 'stopped: non-finite' in lines[-1] and 'learning rate' in lines[-1]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['finished'] is False and summary['stopped'].startswith('non-finite')
  if (workdir / 'alphas.json').exists():  # written only at a good epoch's end
    alphas = search_space.load_alphas(str(workdir / 'alphas.json'))  # refuses NaN
    assert all(map(lambda a: a.size, alphas.values()))


def test_diverged_training_stops_without_saving_non_finite_values(tmp_path, env):
  """`lease-train` with a learning rate that blows the weights up: exit 3, one line naming the
  step, the quantity and the likely cause; not reported finished."""
  workdir = tmp_path / 'train'
  result = run_cli('train_main', f'--config={TINY}', '--genotype=DARTS_V2', f'--workdir={workdir}',
                   '--config.train.learning_rate=1e6', env=env, check=False)
  lines = [line for line in result.stderr.replace('\r', '\n').splitlines()
           if line.startswith('lease-train')]
  assert result.returncode == 3, result.stderr[-2000:]
  assert len(lines) == 1 and 'stopped: non-finite' in lines[0], lines
  assert 'train.learning_rate 1000000.0' in lines[0], lines[0]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['finished'] is False and summary['stopped'].startswith('non-finite')
  assert 'test error' not in result.stdout
  # the checkpointer refuses a non-finite state (test_data.py): the last one saved is before it
  saved = sorted(int(n) for n in os.listdir(workdir / 'checkpoints'))
  assert saved and summary['step'] == saved[-1] < summary['total_steps']
