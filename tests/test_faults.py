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
import textwrap

import numpy as np
import pytest
from cli_helpers import TINY, error_lines, run_cli, snapshot

# The searches here are first order: the faults are those of the files, the checkpoints and the
# command line, the same for every hypergradient mode, and first order's programs are the
# quickest to build (a warm run takes ~2/3 of hvp's time). hvp's own kill -9 resume is checked
# bitwise in test_pipeline.py.
SEARCH = (f'--config={TINY}', '--config.search.mode=first_order')

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
  result = run_cli('main', *SEARCH, f'--workdir={target}', env=cli_env, check=False)
  _assert_one_line(result, 2, expected)
  assert (tmp_path / 'a_file').read_text() == 'keep me'


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only directories')
def test_a_read_only_workdir_is_an_environment_fault(tmp_path, cli_env):
  parent = tmp_path / 'locked'
  parent.mkdir()
  parent.chmod(0o500)
  try:
    result = run_cli('main', *SEARCH, f'--workdir={parent / "run"}', env=cli_env,
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
  result = run_cli('main', *SEARCH, f'--workdir={tmp_path / "run"}',
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
  run_cli('main', *SEARCH, f'--workdir={workdir}', env=cli_env)
  return workdir


def test_a_damaged_checkpoint_is_one_line_and_nothing_is_touched(finished, tmp_path, cli_env):
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  data = workdir / 'checkpoints' / '6' / 'state' / 'ocdbt.process_0' / 'd'
  shutil.rmtree(data)
  before = snapshot(workdir)
  result = run_cli('main', *SEARCH, f'--workdir={workdir}', env=cli_env,
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
  result = run_cli('main', *SEARCH, f'--workdir={workdir}',
                   '--config.search.plot_every=1', env=full, check=False)
  _assert_one_line(result, 1, 'No space left on device', 'epoch001', 'rerun the same command')
  assert os.listdir(workdir / 'checkpoints')
  run_cli('main', *SEARCH, f'--workdir={workdir}', env=cli_env)
  assert _history_without_clock(workdir) == _history_without_clock(finished)
  assert (workdir / 'alphas.json').read_bytes() == (finished / 'alphas.json').read_bytes()


def _injected(tmp_path, cli_env, source):
  """`cli_env` with a `sitecustomize` module running `source` at the subprocess's start."""
  inject = tmp_path / 'inject'
  inject.mkdir()
  (inject / 'sitecustomize.py').write_text(source)
  return dict(cli_env, PYTHONPATH=os.pathsep.join(filter(None, [str(inject),
                                                                cli_env.get('PYTHONPATH')])))


def test_a_disk_that_fills_during_a_checkpoint_save_is_one_line_and_the_run_resumes(
    finished, tmp_path, cli_env):
  """The disk fills while orbax's threads write step 3's arrays: TensorStore's own error (a
  ValueError carrying the system's code, as measured on a 1.2 MB tmpfs) from every write of that
  checkpoint. Before: dozens of logged tracebacks, then a ValueError traceback. Now: exit 1, one
  line; step 2's checkpoint is kept and the same command resumes to the uninterrupted history."""
  full = _injected(tmp_path, cli_env, (
      'from orbax.checkpoint._src.serialization import serialization\n'
      '_write = serialization.async_serialize_from_host\n\n'
      'async def _full(rslices, spec, **kwargs):\n'
      '  if "3.orbax-checkpoint-tmp" in str(spec):\n'
      '    raise ValueError("RESOURCE_EXHAUSTED: Error writing local file: Failed to write 4096 "\n'
      '                     "bytes to file 9: No space left on device [os_error_code=\'28\']")\n'
      '  return await _write(rslices, spec, **kwargs)\n\n'
      'serialization.async_serialize_from_host = _full\n'))
  workdir = tmp_path / 'run'
  result = run_cli('main', *SEARCH, f'--workdir={workdir}', env=full, check=False)
  _assert_one_line(result, 1, 'No space left on device', 'checkpoints', 'rerun the same command')
  assert 'Traceback' not in result.stderr
  assert '2' in os.listdir(workdir / 'checkpoints') and '3' not in os.listdir(
      workdir / 'checkpoints')
  run_cli('main', *SEARCH, f'--workdir={workdir}', env=cli_env)
  assert _history_without_clock(workdir) == _history_without_clock(finished)
  assert (workdir / 'alphas.json').read_bytes() == (finished / 'alphas.json').read_bytes()


def test_ctrl_c_as_a_checkpoint_write_starts_lets_it_land(finished, tmp_path, cli_env):
  """Ctrl-C at the instant orbax starts step 3's save (delivered from inside its `save`). Before,
  the KeyboardInterrupt cut orbax's save half-way: step 3 was lost, and by the timing of a real
  Ctrl-C the process hung or printed interpreter-shutdown tracebacks. Now the Ctrl-C waits for
  the save to be handed off: exit 130, one line, step 3 kept, and the run resumes from it."""
  interrupt = _injected(tmp_path, cli_env, (
      'import os, signal\n'
      'from orbax.checkpoint._src.checkpointers import async_checkpointer\n'
      '_save = async_checkpointer.AsyncCheckpointer.save\n\n'
      'def _save_interrupted(self, directory, *args, **kwargs):\n'
      '  if os.path.basename(str(directory)).split(".")[0] == "3":\n'
      '    os.kill(os.getpid(), signal.SIGINT)\n'
      '  return _save(self, directory, *args, **kwargs)\n\n'
      'async_checkpointer.AsyncCheckpointer.save = _save_interrupted\n'))
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, '-m', 'lease_jax.main', *SEARCH, f'--workdir={workdir}'],
      env=interrupt, capture_output=True, text=True, timeout=600,
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
  _assert_one_line(result, 130, 'interrupted at step 3', 'resume from step 3')
  assert '3' in os.listdir(workdir / 'checkpoints')
  run_cli('main', *SEARCH, f'--workdir={workdir}', env=cli_env)
  assert _history_without_clock(workdir) == _history_without_clock(finished)


def test_an_orbax_write_error_is_read_as_the_machine_fault_it_carries():
  import errno
  from lease_jax import errors
  tensorstore = ValueError("RESOURCE_EXHAUSTED: Failed writing: \"/d/x\": No space left on "
                           "device [os_error_code='28']")
  fault = errors.machine_write_fault(tensorstore, '/run/checkpoints')
  assert fault.errno == errno.ENOSPC and fault.filename == '/run/checkpoints'
  wrapped = RuntimeError('commit failed')
  wrapped.__cause__ = OSError(errno.EDQUOT, 'Disk quota exceeded')
  assert errors.machine_write_fault(wrapped).errno == errno.EDQUOT
  assert errors.machine_write_fault(ValueError("NOT_FOUND [os_error_code='2']")) is None
  assert errors.machine_write_fault(ValueError('shapes differ')) is None


def test_ctrl_c_stops_with_one_line_after_the_checkpoint_lands(tmp_path, cli_env):
  workdir = tmp_path / 'run'
  process = subprocess.Popen(
      [sys.executable, '-m', 'lease_jax.main', *SEARCH, f'--workdir={workdir}',
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


def test_ctrl_c_leaves_at_once_whatever_thread_is_still_waiting(tmp_path):
  # Ctrl-C can land between a lock's acquire and its `with` block and leave the lock held (once,
  # in a ThreadPoolExecutor's idle semaphore: its worker then never ended, nor did the exit that
  # joins it). After the one line, the command leaves without joining threads: here a pool's
  # worker blocked on a lock that nobody will release.
  script = tmp_path / 'interrupted.py'
  script.write_text(textwrap.dedent("""
      import concurrent.futures, threading
      from lease_jax import cli_utils, errors
      held = threading.Lock()
      held.acquire()
      pool = concurrent.futures.ThreadPoolExecutor(1)
      pool.submit(held.acquire)
      with cli_utils.one_line_errors('lease-search'):
        raise errors.Interrupted('interrupted at step 3; rerun the same command to resume from '
                                 'step 3')
      """))
  result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
  _assert_one_line(result, 130, 'lease-search: interrupted at step 3')


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


# ---------------------------------------------------------------------------------------------
# Round three (issue 27): one run per workdir, outputs never overwritten by another config,
# finite config numbers, stray arguments, `~`, image sizes and depths, resumable after a cut
# history, and clearer lines.


def _folder(root, classes, side, count=4):
  """`root/{train,test}/<class>/*.png`: `count` side x side images per class."""
  from PIL import Image
  for split in ('train', 'test'):
    for label, name in enumerate(classes):
      (root / split / name).mkdir(parents=True)
      for i in range(count):
        pixels = np.full((side, side, 3), 40 * label + i, np.uint8)
        Image.fromarray(pixels).save(root / split / name / f'{i:02d}.png')
  return root


def _without(workdir, *names):
  for name in names:
    path = workdir / name
    shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize('removed, expected', [
    (('checkpoints',), 'holds the outputs of a different config: search.gamma'),
    (('checkpoints', 'config.json'), 'no readable config.json'),
])
def test_finished_outputs_are_never_overwritten_by_another_config(finished, tmp_path, cli_env,
                                                                 removed, expected):
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  _without(workdir, *removed)
  before = snapshot(workdir)
  result = run_cli('main', *SEARCH, f'--workdir={workdir}',
                   '--config.search.gamma=0.5', env=cli_env, check=False)
  _assert_one_line(result, 2, expected)
  assert snapshot(workdir) == before


def test_a_second_process_on_a_workdir_in_use_is_refused(finished, tmp_path, cli_env):
  from lease_jax import errors, harness
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  with harness.one_run(str(workdir), 'a test'):  # held by this (running) process
    before = snapshot(workdir)
    result = run_cli('main', *SEARCH, f'--workdir={workdir}', env=cli_env,
                     check=False)
    _assert_one_line(result, 2, f'is in use by process {os.getpid()} (a test')
    assert snapshot(workdir) == before
    with pytest.raises(errors.UserError, match='in use by'):  # within one process as well
      with harness.one_run(str(workdir), 'another'):
        pass
  assert (workdir / '.lock').read_text() == ''  # released, with no record left


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, capsys):
  from lease_jax import harness
  (tmp_path / '.lock').write_text('process 99999999 (lease-search, started 2026-01-01)')
  with harness.one_run(str(tmp_path), 'lease-search'):
    assert f'process {os.getpid()}' in (tmp_path / '.lock').read_text()
  err = capsys.readouterr().err
  assert 'took over the lock left by process 99999999' in err and len(err.splitlines()) == 1


@pytest.mark.parametrize('override, field', [('--config.search.gamma=nan', 'search.gamma'),
                                             ('--config.explanation.epsilon_pixels=inf',
                                              'explanation.epsilon_pixels'),
                                             ('--config.data.max_examples=1',
                                              'data.max_examples = 1')])
def test_a_non_finite_or_impossible_number_is_refused_naming_the_field(tmp_path, cli_env,
                                                                      override, field):
  result = run_cli('main', *SEARCH, f'--workdir={tmp_path / "run"}', override,
                   env=cli_env, check=False)
  _assert_one_line(result, 2, field)
  assert not (tmp_path / 'run').exists()


def test_a_stray_argument_is_refused(tmp_path, cli_env):
  result = run_cli('main', *SEARCH, str(tmp_path / 'mywork'), env=cli_env,
                   check=False)
  _assert_one_line(result, 2, f"unexpected argument '{tmp_path / 'mywork'}'",
                   f'did you mean --workdir={tmp_path / "mywork"}?')
  assert not (tmp_path / 'mywork').exists()


def test_a_tilde_in_a_path_flag_is_the_home_directory(tmp_path, cli_env, monkeypatch):
  home = tmp_path / 'home'
  home.mkdir()
  result = run_cli('main', *SEARCH, '--workdir=~/run', '--config.search.max_steps=0',
                   env=dict(cli_env, HOME=str(home)), check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert (home / 'run' / 'config.json').exists() and not os.path.exists('~')
  from lease_jax import cli_utils, data, spaces
  monkeypatch.setenv('HOME', str(home))
  assert cli_utils.path_flag('~/g.json') == str(home / 'g.json')
  (home / 't.csv').write_text('arch,acc\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n')
  assert len(spaces.read_benchmark_table('~/t.csv')) == 1
  config = type('C', (), {'source': 'image_folder', 'name': 'digits',
                          'get': lambda self, k, d=None: '~/nothing'})()
  with pytest.raises(data.DataError, match=str(home / 'nothing')):
    data.load_sources(config)


@pytest.mark.parametrize('side', [9, 1])
def test_images_the_supernet_cannot_halve_are_refused_before_compiling(tmp_path, cli_env, side):
  root = _folder(tmp_path / 'data', ('a', 'b'), side, count=8)
  result = run_cli('main', *SEARCH, f'--workdir={tmp_path / "run"}',
                   '--config.data.source=image_folder', f'--config.data.data_dir={root}',
                   '--config.data.max_examples=-1', env=cli_env, check=False)
  _assert_one_line(result, 2, f'images of {side}x{side}', 'sides divisible by 2')


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
  from PIL import Image

  from lease_jax import data
  for label in ('a', 'b'):
    (tmp_path / 'train' / label).mkdir(parents=True)
    pixels = np.array([[0, 257, 30000, 65535]], np.uint16)
    Image.fromarray(pixels).save(tmp_path / 'train' / label / 'x.png')
  image, _ = data.ImageFolderSource(str(tmp_path / 'train'))[0]
  assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
  assert image[0, :, 0].tolist() == [0, 1, 117, 255]  # ÷257, rounded: 65535 is 255


def test_a_history_cut_mid_line_is_mended_from_the_checkpoint(finished, tmp_path, cli_env):
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  text = (workdir / 'history.jsonl').read_text()
  (workdir / 'history.jsonl').write_text(text[:len(text) - 40])  # the last line lost its end
  result = run_cli('main', *SEARCH, f'--workdir={workdir}', env=cli_env)
  assert 'its last line was cut' in result.stderr
  assert _history_without_clock(workdir) == _history_without_clock(finished)
  summary = json.loads((workdir / 'summary.json').read_text())
  finished_summary = json.loads((finished / 'summary.json').read_text())
  assert summary['final_metrics'] == finished_summary['final_metrics']


def test_a_dangling_checkpoints_link_is_one_line(finished, tmp_path, cli_env):
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  shutil.rmtree(workdir / 'checkpoints')
  (workdir / 'checkpoints').symlink_to(tmp_path / 'unmounted' / 'disk')
  before = snapshot(workdir)
  result = run_cli('main', *SEARCH, f'--workdir={workdir}', env=cli_env,
                   check=False)
  _assert_one_line(result, 1, 'is a symbolic link to', 'does not exist (an unmounted disk?)')
  assert snapshot(workdir) == before and os.path.islink(workdir / 'checkpoints')


@pytest.mark.parametrize('genotype, expected', [
    ('|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|', 'is an NB201 arch string'),
    ('nb201.json', 'holds an NB201 cell'),
    ('workdir', 'is a directory; the search\'s cell is'),
])
def test_lease_train_says_what_a_wrong_genotype_is(tmp_path, cli_env, genotype, expected):
  (tmp_path / 'nb201.json').write_text(json.dumps(
      {'space': 'nb201', 'arch': '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'}))
  (tmp_path / 'workdir').mkdir()
  (tmp_path / 'workdir' / 'genotype.json').write_text('{}')
  value = str(tmp_path / genotype) if not genotype.startswith('|') else genotype
  result = run_cli('train_main', f'--config={TINY}', f'--genotype={value}',
                   f'--workdir={tmp_path / "t"}', env=cli_env, check=False)
  _assert_one_line(result, 2, expected)
  assert not (tmp_path / 't').exists()


def test_a_folder_named_like_a_known_dataset_keeps_its_own_classes(tmp_path):
  from lease_jax import data
  root = _folder(tmp_path / 'cifar10', ('a', 'b', 'c'), 8, count=2)
  config = lambda name: type('C', (), {'source': 'image_folder', 'name': name,
                                       'get': lambda self, k, d=None: str(root)})()
  info, _, _ = data.load_sources(config('digits'))  # the name came from the folder
  assert info.num_classes == 3
  with pytest.raises(data.DataError, match="data.name 'cifar10' has 10 classes; set data.name"):
    data.load_sources(config('cifar10'))  # asked for by name


def test_benchmark_tables_from_spreadsheets(tmp_path):
  from lease_jax import search_space, spaces
  arch = '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'
  excel = tmp_path / 'excel.csv'
  excel.write_bytes(f'\ufeffarch,test_acc,\r\n{arch},54.3,\r\n'.encode('utf-8'))
  assert spaces.read_benchmark_table(str(excel)) == {arch: {'test_acc': 54.3}}
  other = search_space.Nb201Arch.from_string(arch.replace('none~0|+', 'skip_connect~0|+', 1))
  found = spaces.look_up(spaces.read_benchmark_table(str(excel)), other)
  assert found == {} and 'has no row for the cell' in spaces.missing_note(other, found)
  assert spaces.missing_note(other, None) is None
