"""Shared by the command-line entry points: config files, JAX settings, one-line errors."""

from __future__ import annotations

import logging
import os
import sys

import jax

from lease_jax import errors

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')


def config_path(name: str) -> str:
  """The path of a packaged config file (`lease_jax/configs/<name>.py`, also `configs/`)."""
  return os.path.join(CONFIG_DIR, f'{name}.py')


def load_config(path: str, overrides: tuple[str, ...] = ()):
  """The config file at `path` with `--config.a.b=value` overrides, parsed and locked as the
  command-line tools parse theirs (for scripts and tests, which have no absl app)."""
  from absl import flags
  from ml_collections import config_flags
  values, argv = flags.FlagValues(), ['lease_jax', *overrides]
  # ml_collections reads the overrides from `sys_argv` when the flag is defined, so they go there
  # as well as to the parse: without it they would come from this process's command line.
  config_flags.DEFINE_config_file('config', path, flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  return values.config


def setup_jax(config=None) -> None:
  """Turns on JAX's persistent compilation cache, so that a run pays each compilation once.

  The cache lives in `$LEASE_JAX_CACHE` (default `~/.cache/lease_jax/xla`); set it empty to
  disable. A resumed or repeated run then starts in seconds instead of minutes. Programs that
  compile in under 2 s are not worth a disk entry unless `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`
  says otherwise (the test suite caches everything).
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
    jax.config.update('jax_persistent_cache_min_compile_time_secs',
                      float(os.environ.get('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', 2.0)))
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


# The error types live in the leaf `errors` module (the library raises them); their old names here.
UserError, EnvironmentFault, Interrupted = errors.UserError, errors.EnvironmentFault, errors.Interrupted
ENVIRONMENT_ERRNOS = errors.ENVIRONMENT_ERRNOS


class one_line_errors:
  """One stderr line instead of a traceback: bad input (data, genotype, checkpoint, config value
  errors) exits with status 2, a fault of the machine (disk full, read-only, permissions) with 1,
  a diverged run (NaN or Inf) with 3, Ctrl-C with 130; anything else is a bug and keeps its
  traceback."""

  def __init__(self, prog: str):
    self.prog = prog

  def __enter__(self):
    return self

  def __exit__(self, kind, error, tb):
    if isinstance(error, EnvironmentFault):
      print(f'{self.prog}: error: {error}', file=sys.stderr)
      sys.exit(1)
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
      where = f' writing {error.filename!r}' if error.filename else ''
      print(f'{self.prog}: error: {os.strerror(error.errno)}{where}; the checkpoints already '
            f'saved are kept: free space or fix permissions, then rerun the same command to '
            f'resume', file=sys.stderr)
      sys.exit(1)
    if isinstance(error, (Interrupted, KeyboardInterrupt)):
      if isinstance(error, Interrupted):
        print(f'{self.prog}: {error}', file=sys.stderr)
      else:
        print(f'{self.prog}: interrupted before the run loop; rerun the same command to resume '
              f'(from the last checkpoint, if there is one)', file=sys.stderr)
      # Everything saved has landed (`checkpoint.stopping_safely` waited; the loops flushed their
      # events; the workdir's lock is released). Leave at once: a normal exit joins every
      # non-daemon thread, and Ctrl-C can land between a lock's acquire and its `with` block
      # (Python's signal handling), leaving the lock held. Seen once in the suite on a loaded
      # machine: the interrupt landed in a `ThreadPoolExecutor.submit`, inside the pool's
      # idle semaphore's condition (the prefetcher submits every step); the pool's worker then
      # blocked forever releasing that semaphore, and the exit forever joining the worker (py-spy,
      # 20 minutes after this line).
      _leave_now(130)
    if isinstance(error, errors.NonFiniteError):
      print(f'{self.prog}: stopped: {error}; the last good checkpoint and outputs are kept',
            file=sys.stderr)
      sys.exit(3)
    if isinstance(error, errors.CheckpointError):
      print(f'{self.prog}: error: {error}', file=sys.stderr)
      # A failed restore leaves TensorStore reads in flight whose callbacks, at interpreter
      # exit, print "Event loop is closed" tracebacks after the line. Nothing of the run has
      # started (the restore is its first step), so leave at once.
      _leave_now(2)
    if isinstance(error, UserError):
      print(f'{self.prog}: error: {error}', file=sys.stderr)
      sys.exit(2)
    return False


def _leave_now(status: int) -> None:
  """Exits with `status` at once, stdout and stderr flushed, skipping interpreter shutdown (its
  thread joins and exit handlers)."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


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


def _config_flag(argv: list[str]) -> str | None:
  """The value of `--config` in `argv` (`--config=x` or `--config x`), None if absent."""
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def check_config_file(value: str) -> None:
  """Loads a `--config` file as ml_collections will and refuses, in one line, one that cannot
  give a config: missing, a syntax or import error, no `get_config`, an error inside it, or a
  result that is not an `ml_collections.ConfigDict`."""
  import importlib.util

  import ml_collections
  path, _, argument = value.partition(':')  # ml_collections' `file.py:argument` form
  if not os.path.isfile(path):
    raise UserError(f'--config {path!r}: no such file (a Python file with get_config(); the '
                    f'packaged ones are in {CONFIG_DIR})')
  try:
    spec = importlib.util.spec_from_file_location('lease_jax_config_check', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - any error of the user's file is reported, not raised
    raise UserError(f'the config file {path!r} could not be loaded: {type(e).__name__}: '
                    f'{str(e).splitlines()[0] if str(e) else ""}') from None
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    raise UserError(f'the config file {path!r} has no get_config() function')
  try:
    config = get_config(argument) if argument else get_config()
  except Exception as e:  # noqa: BLE001
    raise UserError(f'{path}: get_config() raised {type(e).__name__}: '
                    f'{str(e).splitlines()[0] if str(e) else ""}') from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f'{path}: get_config() returned a {type(config).__name__}, not an '
                    f'ml_collections.ConfigDict')


def path_flag(value: str | None) -> str | None:
  """A path given on the command line, `~` expanded as the shell would have (quoted, it was
  not): `--workdir`, `--genotype`, and the config's `data.data_dir` and `benchmark.table`
  (expanded where they are read)."""
  return os.path.expanduser(value) if value else value


class _WriteFaultLogsDropped(logging.Filter):
  """A full disk under a checkpoint save makes orbax's threads and asyncio log each failed write
  with its traceback (dozens of them); `one_line_errors` reports the fault once, in one line."""

  def filter(self, record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return (errors.machine_write_fault(error) is None and
            errors.machine_write_fault(Exception(record.getMessage())) is None)


def _closed_loop_callbacks_dropped(excepthook):
  """`excepthook` without TensorStore's late callbacks: when a save or restore fails, orbax
  closes its event loop while TensorStore's other writes are in flight, and each of them, on
  completing, prints "RuntimeError: Event loop is closed" through `sys.excepthook` from a
  TensorStore thread. Nothing of the run uses asyncio; the fault itself is reported in one line."""
  def hook(kind, value, tb):
    if not (issubclass(kind, RuntimeError) and str(value) == 'Event loop is closed'):
      excepthook(kind, value, tb)
  return hook


def run_app(define_flags, main, prog: str):
  """Defines the flags and runs `main` under absl, reporting flag errors (a config file that does
  not load, a config field that does not exist, a bad value) as one line with exit status 2."""
  from absl import app, flags
  quiet = _WriteFaultLogsDropped()
  for name in ('absl', 'asyncio'):  # orbax logs through absl's logger
    logging.getLogger(name).addFilter(quiet)
  sys.excepthook = _closed_loop_callbacks_dropped(sys.excepthook)
  try:
    config_file = _config_flag(sys.argv)
    if config_file is not None:
      check_config_file(config_file)
    define_flags()  # ml_collections resolves `--config.a.b=...` overrides here
    extra = flags.FLAGS(sys.argv)[1:]
    if extra:
      hint = f'; did you mean --workdir={extra[0]}?' if 'workdir' in flags.FLAGS else ''
      raise UserError(f'unexpected argument {extra[0]!r}: every argument is a flag '
                      f'(--name=value){hint}')
    if 'config' in flags.FLAGS:
      flags.FLAGS.config.keys()  # a config file that fails to load raises on first access
  except UserError as e:
    print(f'{prog}: error: {e}', file=sys.stderr)
    sys.exit(2)
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
