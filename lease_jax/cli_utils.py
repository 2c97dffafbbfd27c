"""Shared by the command-line entry points: config files, JAX settings, one-line errors."""

from __future__ import annotations

import os
import sys

import jax

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')


def config_path(name: str) -> str:
  """The path of a packaged config file (`lease_jax/configs/<name>.py`, also `configs/`)."""
  return os.path.join(CONFIG_DIR, f'{name}.py')


def setup_jax(config=None) -> None:
  """Turns on JAX's persistent compilation cache, so that a run pays each compilation once.

  The cache lives in `$LEASE_JAX_CACHE` (default `~/.cache/lease_jax/xla`); set it empty to
  disable. A resumed or repeated run then starts in seconds instead of minutes.
  """
  del config
  from absl import logging
  # orbax logs each checkpoint's every phase at INFO through absl: keep the console for progress
  # and summaries unless the user asked for more (`--verbosity=0`).
  if logging.get_verbosity() == logging.INFO and not any(
      a.startswith(('--verbosity', '-v=')) for a in sys.argv):
    logging.set_verbosity(logging.WARNING)
  if os.environ.get('LEASE_JAX_DISTRIBUTED', '') == '1':
    initialize_distributed()
  cache = os.environ.get('LEASE_JAX_CACHE',
                         os.path.join(os.path.expanduser('~'), '.cache', 'lease_jax', 'xla'))
  if cache:
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 2.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def initialize_distributed() -> None:
  """Joins a multi-process run (`LEASE_JAX_DISTRIBUTED=1`).

  With `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` set, those; otherwise
  `jax.distributed.initialize()` detects the cluster (SLURM, TPU pod slices, Kubernetes). On CPU
  the cross-process collectives are gloo's.
  """
  if os.environ.get('JAX_PLATFORMS', '') == 'cpu':
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  if address:
    jax.distributed.initialize(coordinator_address=address,
                               num_processes=int(os.environ['JAX_NUM_PROCESSES']),
                               process_id=int(os.environ['JAX_PROCESS_ID']))
  else:
    jax.distributed.initialize()


class UserError(Exception):
  """An error to report in one line (bad input), not as a traceback."""


class EnvironmentFault(Exception):
  """A fault of the machine, not of the input (a read-only directory): one line, exit status 1."""


def check_workdir(workdir: str) -> None:
  """Refuses a workdir that cannot hold a run, before anything is loaded or compiled: empty, an
  existing file (`UserError`), or not writable (`EnvironmentFault`)."""
  if not workdir or not workdir.strip():
    raise UserError('--workdir is empty; name a directory for the run (it is created)')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir {workdir!r} is a file; name a directory')
  parent = workdir if os.path.isdir(workdir) else os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.access(parent, os.W_OK | os.X_OK):
    raise EnvironmentFault(f'--workdir {workdir!r}: {parent!r} is not writable')


def _user_error_types():
  from lease_jax import checkpoint, data, search_space, spaces
  return (data.DataError, search_space.GenotypeError, checkpoint.CheckpointError,
          spaces.SpaceError, UserError)


class one_line_errors:
  """Reports bad input (data, genotype, checkpoint, config value errors) as one stderr line and
  exits with status 2, a diverged run (NaN or Inf) as one line with status 3; anything else is a
  bug and keeps its traceback."""

  def __init__(self, prog: str):
    self.prog = prog

  def __enter__(self):
    return self

  def __exit__(self, kind, error, tb):
    from lease_jax import checkpoint
    if isinstance(error, EnvironmentFault):
      print(f'{self.prog}: error: {error}', file=sys.stderr)
      sys.exit(1)
    if isinstance(error, checkpoint.NonFiniteError):
      print(f'{self.prog}: stopped: {error}; the last good checkpoint and outputs are kept',
            file=sys.stderr)
      sys.exit(3)
    if error is not None and isinstance(error, _user_error_types()):
      print(f'{self.prog}: error: {error}', file=sys.stderr)
      sys.exit(2)
    return False


def _config_override_error(error: Exception) -> str:
  """Names the `--config.*` override that does not resolve, with ml_collections' suggestion."""
  import re
  text = str(error).replace('\\n', ' ').replace('\n', ' ').replace("\\'", "'")
  key = re.search(r"'(\w+)'", text)
  hint = re.search(r'Did you mean "(\w+)"', text)
  overrides = [a.split('=')[0] for a in sys.argv[1:] if a.startswith('--config.')]
  field = next((o for o in overrides if key and key.group(1) in o.split('.')), None)
  message = f'{field[2:] if field else "a --config override"}: no such config field'
  return message + (f' (did you mean "{hint.group(1)}"?)' if hint else '')


def run_app(define_flags, main, prog: str):
  """Defines the flags and runs `main` under absl, reporting flag errors (a config file that does
  not load, a config field that does not exist, a bad value) as one line with exit status 2."""
  from absl import app, flags
  try:
    define_flags()  # ml_collections resolves `--config.a.b=...` overrides here
    flags.FLAGS(sys.argv)
    if 'config' in flags.FLAGS:
      flags.FLAGS.config.keys()  # a config file that fails to load raises on first access
  except flags.Error as e:
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f'{prog}: error: {message}', file=sys.stderr)
    sys.exit(2)
  except (KeyError, AttributeError) as e:
    print(f'{prog}: error: {_config_override_error(e)}', file=sys.stderr)
    sys.exit(2)
  except OSError as e:
    first = str(e).strip().splitlines()
    detail = ' '.join(line.strip() for line in first[1:4]) if len(first) > 1 else first[0]
    print(f'{prog}: error: the config file could not be loaded: {detail}', file=sys.stderr)
    sys.exit(2)
  app.run(main, argv=sys.argv[:1])
