"""The fault suite: bad input and faults of the machine, driven through the command-line tools as
a user meets them. Each case asserts the exit status (2 bad input, 1 the machine's fault, 3 a
diverged run, 130 Ctrl-C), that stderr is one line naming the culprit, and that what the workdir
already held is untouched. Most are refused before anything is compiled."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import TINY, error_lines, run_cli, snapshot

CONFIG_FILES = {
    'syntax.py': ('def get_config(:\n', 'SyntaxError: invalid syntax'),
    'imports.py': ('import no_such_module_here\n', "No module named 'no_such_module_here'"),
    'no_function.py': ('CONFIG = 1\n', 'has no get_config() function'),
    'not_a_config.py': ('def get_config():\n  return {"seed": 0}\n',
                        'returned a dict, not an ml_collections.ConfigDict'),
    'raises.py': ('def get_config():\n  raise ValueError("bad width")\n',
                  'get_config() raised ValueError: bad width'),
    'no_search.py': ('from lease_jax.configs import default\n\ndef get_config():\n'
                     '  config = default.get_config()\n  del config.search\n  return config\n',
                     "the config has no 'search' block"),
}


def _assert_one_line(result, status, *expected):
  lines = error_lines(result)
  assert result.returncode == status and len(lines) == 1, (result.returncode, lines[-5:])
  for text in expected:
    assert text in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize('name', sorted(CONFIG_FILES))
def test_a_config_file_that_gives_no_config_is_one_line(tmp_path, cli_env, name):
  source, expected = CONFIG_FILES[name]
  path = tmp_path / name
  path.write_text(source)
  result = run_cli('main', f'--config={path}', f'--workdir={tmp_path / "run"}', env=cli_env,
                   check=False)
  _assert_one_line(result, 2, expected)
  assert not (tmp_path / 'run').exists()


def test_lease_train_refuses_a_config_without_a_train_block(tmp_path, cli_env):
  path = tmp_path / 'search_only.py'
  path.write_text('from lease_jax.configs import default\n\ndef get_config():\n'
                  '  config = default.get_config()\n  del config.train\n  return config\n')
  result = run_cli('train_main', f'--config={path}', '--genotype=DARTS_V2',
                   f'--workdir={tmp_path / "t"}', env=cli_env, check=False)
  _assert_one_line(result, 2, "the config has no 'train' block")
  assert not (tmp_path / 't').exists()


@pytest.mark.parametrize('workdir, expected', [('', '--workdir is empty'),
                                               ('a_file', 'is a file')])
def test_a_workdir_that_cannot_hold_a_run_is_one_line(tmp_path, cli_env, workdir, expected):
  (tmp_path / 'a_file').write_text('keep me')
  target = str(tmp_path / workdir) if workdir else ''
  result = run_cli('main', f'--config={TINY}', f'--workdir={target}', env=cli_env, check=False)
  _assert_one_line(result, 2, expected)
  assert (tmp_path / 'a_file').read_text() == 'keep me'


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only directories')
def test_a_read_only_workdir_is_an_environment_fault(tmp_path, cli_env):
  parent = tmp_path / 'locked'
  parent.mkdir()
  parent.chmod(0o500)
  try:
    result = run_cli('main', f'--config={TINY}', f'--workdir={parent / "run"}', env=cli_env,
                     check=False)
  finally:
    parent.chmod(0o700)
  _assert_one_line(result, 1, 'is not writable')


def _image_folder(root, sizes):
  from PIL import Image
  for split in ('train', 'test'):
    for label, name in enumerate(('cat', 'dog')):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(12):
        size = sizes.get((split, name, i), 8)
        pixels = np.full((size, size, 3), 40 * label + i, np.uint8)
        Image.fromarray(pixels).save(folder / f'{i:02d}.png')


def test_images_of_different_sizes_are_refused_before_compiling(tmp_path, cli_env):
  root = tmp_path / 'images'
  _image_folder(root, {('train', 'dog', 5): 10})
  result = run_cli('main', f'--config={TINY}', f'--workdir={tmp_path / "run"}',
                   '--config.data.source=image_folder', f'--config.data.data_dir={root}',
                   '--config.data.max_examples=-1', env=cli_env, check=False)
  line = _assert_one_line(result, 2, 'images of different sizes', 'is 8x8',
                          os.path.join('dog', '05.png'), 'is 10x10')
  assert 'compil' not in result.stderr.lower(), line
  assert not (tmp_path / 'run' / 'checkpoints').exists()


@pytest.fixture(scope='module')
def finished(tmp_path_factory, cli_env):
  """A finished tiny search (2 epochs of 3 steps)."""
  workdir = tmp_path_factory.mktemp('faults') / 'run'
  run_cli('main', f'--config={TINY}', f'--workdir={workdir}', env=cli_env)
  return workdir


def test_a_damaged_checkpoint_is_one_line_and_nothing_is_touched(finished, tmp_path, cli_env):
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  data = workdir / 'checkpoints' / '6' / 'state' / 'ocdbt.process_0' / 'd'
  shutil.rmtree(data)
  before = snapshot(workdir)
  result = run_cli('main', f'--config={TINY}', f'--workdir={workdir}', env=cli_env,
                   check=False)
  _assert_one_line(result, 2, 'checkpoints/6 cannot be restored', 'move it aside')
  assert 'TensorStore details' not in result.stderr
  assert snapshot(workdir) == before


def _history_without_clock(workdir):
  return [{k: v for k, v in json.loads(line).items() if k != 'elapsed_s'}
          for line in (workdir / 'history.jsonl').read_text().splitlines()]


def test_a_full_disk_stops_with_one_line_and_the_run_resumes(finished, tmp_path, cli_env):
  """The disk fills while the first epoch's plots are written (simulated: every figure save
  fails with ENOSPC, through `sitecustomize`): exit 1 with one line; the same command then
  resumes and ends with the uninterrupted run's history."""
  inject = tmp_path / 'inject'
  inject.mkdir()
  (inject / 'sitecustomize.py').write_text(
      'import errno\nimport matplotlib.figure\n\n'
      'def _full(self, fname, *args, **kwargs):\n'
      '  raise OSError(errno.ENOSPC, "No space left on device", str(fname))\n\n'
      'matplotlib.figure.Figure.savefig = _full\n')
  workdir = tmp_path / 'run'
  full = dict(cli_env, PYTHONPATH=os.pathsep.join(filter(None, [str(inject),
                                                                cli_env.get('PYTHONPATH')])))
  result = run_cli('main', f'--config={TINY}', f'--workdir={workdir}',
                   '--config.search.plot_every=1', env=full, check=False)
  _assert_one_line(result, 1, 'No space left on device', 'epoch001', 'rerun the same command')
  assert os.listdir(workdir / 'checkpoints')
  run_cli('main', f'--config={TINY}', f'--workdir={workdir}', env=cli_env)
  assert _history_without_clock(workdir) == _history_without_clock(finished)
  assert (workdir / 'alphas.json').read_bytes() == (finished / 'alphas.json').read_bytes()


def test_ctrl_c_stops_with_one_line_after_the_checkpoint_lands(tmp_path, cli_env):
  workdir = tmp_path / 'run'
  process = subprocess.Popen(
      [sys.executable, '-m', 'lease_jax.main', f'--config={TINY}', f'--workdir={workdir}',
       '--config.search.epochs=100'], env=cli_env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      # As from a terminal: a pytest-xdist worker (like a shell's background job) ignores SIGINT,
      # and a child inherits that, so Python would never raise KeyboardInterrupt in it.
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  for line in process.stdout:  # the first epoch's line: its checkpoint is under way
    if line.startswith('epoch 1/'):
      break
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=300)
  result = subprocess.CompletedProcess(process.args, process.returncode, '', stderr)
  line = _assert_one_line(result, 130, 'interrupted at step', 'rerun the same command')
  resumes_from = int(line.rsplit('from step ', 1)[1])
  assert resumes_from >= 3 and str(resumes_from) in os.listdir(workdir / 'checkpoints')


@pytest.mark.parametrize('override, expected', [
    ("--config.compare.settings=('hvp','fd_zero')", "compare.settings: 'fd_zero'; accepted"),
    ('--config.compare.points=0', 'compare.points = 0'),
    ('--config.search.mode=exactly', "search.mode 'exactly'"),
])
def test_lease_compare_grads_bad_input_is_one_line(tmp_path, cli_env, override, expected):
  from lease_jax import cli_utils
  result = run_cli('compare', f'--config={cli_utils.config_path("compare_hypergrads")}',
                   f'--workdir={tmp_path / "cmp"}', override, env=cli_env, check=False)
  _assert_one_line(result, 2, expected)
  assert not (tmp_path / 'cmp').exists()
