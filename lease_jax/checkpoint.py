"""Orbax checkpoints with exact resume, and the guard against resuming a different experiment.

A checkpoint holds the whole state (every pytree, every optimizer state, the step, which is also
the data position, and the RNG). `workdir/config.json` records the config of the run that owns
the workdir: starting a run whose config differs in anything that changes the result is refused
with one line naming the differing fields, and nothing in the workdir is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lease_jax import errors, writers

# Fields that change how a run goes, not what it computes: they may differ on resume.
RESUMABLE_FIELDS = ('search.max_steps', 'search.log_every', 'search.checkpoint_every',
                    'search.keep_checkpoints', 'search.plot_every', 'search.jit_whole_step',
                    'data.workers', 'data.data_dir', 'train.max_steps', 'train.log_every',
                    'train.checkpoint_every', 'train.keep_checkpoints', 'train.genotype',
                    'train.eval_every_epochs', 'train.test_examples', 'train.eval_batch_size',
                    'parallel.num_devices', 'benchmark.table')


CheckpointError = errors.CheckpointError  # this module's errors (lease_jax.errors)
NonFiniteError = errors.NonFiniteError


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True


def check_finite_metrics(step: int, metrics: dict, hint: str = '') -> None:
  """Raises `NonFiniteError` naming the first non-finite metric of a step (one host sync)."""
  values = jax.device_get(metrics)
  for key in sorted(values):
    if not np.all(np.isfinite(values[key])):
      raise NonFiniteError(f'non-finite {key} at step {step}{hint}')


def check_finite_state(step: int, state: Any, hint: str = '') -> None:
  """Raises `NonFiniteError` if the weights or optimizer state hold a NaN or Inf (`hint`: the
  likely cause, appended to the message)."""
  if not bool(_all_finite(state)):
    raise NonFiniteError(f'non-finite weights or optimizer state at step {step} (not saved)'
                         f'{hint}')


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f'{prefix}{key}.'))
    return out
  return {prefix[:-1]: tree}


# Fields added after runs were made, with the value that reproduces those runs: a saved config
# without the field and a current one at this value are the same experiment (resumable).
ADDED_FIELDS = {'explainer.base': 'darts', 'explainer.partial_channels': 4,
                'explainer.edge_normalization': True, 'search.warmup_epochs': 0,
                'hypergrad.explainer_steps': 1, 'hypergrad.explanation_steps': 1,
                'hypergrad.audience_steps': 1, 'hypergrad.implicit_solver': 'cg',
                'hypergrad.implicit_iterations': 10, 'hypergrad.implicit_damping': 1.0,
                'hypergrad.implicit_scale': 0.025, 'train.keep_partial_batch': False,
                'audience.blocks_per_stage': 2}


def config_differences(saved: dict, current: dict) -> list[str]:
  """Fields (dotted) whose values differ, ignoring `RESUMABLE_FIELDS` and `ADDED_FIELDS` that
  the saved config lacks and the current one has at their old behaviour's value."""
  a, b = _flatten(saved), _flatten(current)
  for field, value in ADDED_FIELDS.items():
    if field not in a and b.get(field) == value:
      a[field] = value
  keys = sorted(set(a) | set(b))
  resumable = lambda k: any(k == f or k.startswith(f + '.') for f in RESUMABLE_FIELDS)
  return [k for k in keys if not resumable(k) and a.get(k, '<missing>') != b.get(k, '<missing>')]


def _first_words(error: Exception, limit: int = 200) -> str:
  """The informative start of an orbax/TensorStore error (without its bound-method dump)."""
  text = (str(error).splitlines() or [''])[0].split(' See full TensorStore details')[0]
  return text[:limit]


@contextlib.contextmanager
def _stderr_muted_on_failure(settle_s: float = 1.0):
  """When a restore fails, TensorStore's reads still in flight call back into orbax's closed
  event loop from their own threads, each printing an "Event loop is closed" traceback (at the
  C level, past Python's logging). Their output goes to /dev/null while the restore runs and,
  if it fails, for `settle_s` more; the caller then reports one line and exits at once
  (`cli_utils.one_line_errors`)."""
  import sys
  import time
  sys.stderr.flush()
  saved = os.dup(2)
  null = os.open(os.devnull, os.O_WRONLY)
  os.dup2(null, 2)
  try:
    yield
  except Exception:
    time.sleep(settle_s)
    raise
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(null)


@contextlib.contextmanager
def _ctrl_c_held_back():
  """Ctrl-C waits until orbax has handed a save to its threads: interrupted half-way through
  `CheckpointManager.save`, orbax is left with a commit thread and no finaliser (a rerun is
  fine, but this process hangs at exit or prints interpreter-shutdown tracebacks). The held
  Ctrl-C is delivered as soon as the save is handed off. Only the main thread receives
  signals; elsewhere, and where SIGINT is ignored, nothing changes."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = signal.getsignal(signal.SIGINT)
  if not callable(previous):  # SIG_IGN, SIG_DFL or a handler not set from Python
    yield
    return
  held = []
  signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
    if held:
      previous(signal.SIGINT, held[-1])  # Python's default handler raises KeyboardInterrupt


@contextlib.contextmanager
def _write_faults_as_os_errors(directory: str):
  """orbax reports a full disk (or a quota, a read-only mount) as TensorStore's ValueError;
  raised here as the `OSError` it stands for, which the edge reports in one line (exit 1)."""
  try:
    yield
  except Exception as error:  # noqa: BLE001 - only a machine fault is translated
    fault = errors.machine_write_fault(error, directory)
    if fault is None or (fault is error and fault.filename):
      raise
    raise OSError(fault.errno, os.strerror(fault.errno), fault.filename or directory) from None


class Checkpointer:
  """Saves and restores a state pytree in `directory` (orbax `CheckpointManager`)."""

  def __init__(self, workdir: str, config_dict: dict, keep: int = 2,
               subdir: str = 'checkpoints'):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, subdir))
    self.config_dict = config_dict
    self.extra: dict = {}  # the restored checkpoint's `extra` ({} for a fresh run)
    if os.path.islink(self.directory) and not os.path.exists(self.directory):
      raise errors.EnvironmentFault(
          f'{self.directory} is a symbolic link to {os.readlink(self.directory)!r}, which does '
          f'not exist (an unmounted disk?); mount it, or remove the link to start afresh')
    has_checkpoint = os.path.isdir(self.directory) and any(
        name.isdigit() for name in os.listdir(self.directory))
    if not has_checkpoint:  # refused before the manager creates `checkpoints/`
      self._check_config(config_dict, has_checkpoint)
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    if has_checkpoint:  # the checkpoints' own record of their config needs the manager
      self._check_config(config_dict, has_checkpoint)

  def _saved_config(self, path: str) -> dict | None:
    """The config of the workdir's checkpoints: `config.json`, else the one every checkpoint
    carries (so that losing `config.json` does not lift the guard)."""
    if os.path.exists(path):
      try:
        with open(path) as f:
          return json.load(f)
      except (OSError, json.JSONDecodeError):
        pass
    manager = getattr(self, 'manager', None)  # none yet: the workdir holds no checkpoint
    step = manager.latest_step() if manager is not None else None
    if step is None:
      return None
    try:
      extra = manager.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore()))
      return (extra['extra'] or {}).get('config')
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is reported by restore_or
      return None

  def _check_config(self, config_dict: dict, has_checkpoint: bool) -> None:
    """The different-config guard. It holds with the checkpoints alone (each records its
    config), with `config.json` alone, and with finished outputs alone (`summary.json` without
    a record of its config is refused: nothing is overwritten that cannot be shown to be this
    config's)."""
    path = os.path.join(self.workdir, 'config.json')
    outputs = [name for name in ('summary.json', 'history.jsonl', 'alphas.json')
               if os.path.exists(os.path.join(self.workdir, name))]
    if has_checkpoint or os.path.exists(path) or outputs:
      saved = self._saved_config(path)
      if saved is None and has_checkpoint:
        raise CheckpointError(f'{path} is missing or unreadable and the checkpoints in '
                              f'{self.directory} do not record their config; use a new '
                              f'--workdir')
      if saved is None and outputs:
        raise CheckpointError(f'workdir {self.workdir!r} holds a run\'s outputs ({outputs[0]}) '
                              f'but no readable config.json to show which config made them; '
                              f'use a new --workdir (nothing was touched)')
      if saved is None:  # an unreadable config.json and nothing else: a fresh start
        writers.write_json_atomic(path, config_dict, indent=1, sort_keys=True, default=str)
        return
      differences = config_differences(saved, config_dict)
      if differences:
        shown = ', '.join(f'{k} ({_flatten(saved).get(k, "<missing>")!r} -> '
                          f'{_flatten(config_dict).get(k, "<missing>")!r})'
                          for k in differences[:6])
        more = f' and {len(differences) - 6} more' if len(differences) > 6 else ''
        held = 'a checkpoint' if has_checkpoint else 'the outputs'
        raise CheckpointError(
            f'workdir {self.workdir!r} holds {held} of a different config: {shown}{more}; '
            f'use a new --workdir, or the config that made it')
      if not os.path.exists(path):
        writers.write_json_atomic(path, saved, indent=1, sort_keys=True, default=str)
    else:
      os.makedirs(self.workdir, exist_ok=True)
      writers.write_json_atomic(path, config_dict, indent=1, sort_keys=True, default=str)

  def restore_or(self, init_state: Any) -> tuple[Any, bool]:
    """(the latest checkpoint restored into `init_state`'s structure, True), else (init, False)."""
    step = self.manager.latest_step()
    if step is None:
      return init_state, False
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, init_state)
    try:
      with _stderr_muted_on_failure():
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for a damaged or foreign checkpoint
      raise CheckpointError(
          f'checkpoint {os.path.join(self.directory, str(step))} cannot be restored '
          f'({type(e).__name__}: {_first_words(e)}); move it aside to resume '
          f'from an earlier one, or use a new --workdir') from None
    self.extra = dict(restored['extra'] or {})
    return restored['state'], True

  def save(self, step: int, state: Any, force: bool = False, extra: dict | None = None,
           hint: str = '') -> None:
    """Saves `state` as `step`, with `extra` (JSON: e.g. the running metric sums of an epoch,
    so that a resumed run's epoch means equal an uninterrupted run's). A state holding a NaN or
    Inf is never saved (`NonFiniteError`, its message ending with `hint`)."""
    if step in (self.manager.all_steps() or []):
      return
    check_finite_state(step, state, hint)
    extra = {**(extra or {}), 'config': self.config_dict}  # the guard's record, in every one
    with _write_faults_as_os_errors(self.directory), _ctrl_c_held_back():
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)), force=force)

  def settle(self) -> int | None:
    """Waits for the in-flight saves to land; the latest saved step (None if none)."""
    with _write_faults_as_os_errors(self.directory):
      self.manager.wait_until_finished()
    return self.manager.latest_step()

  def close(self) -> None:
    with _write_faults_as_os_errors(self.directory):
      self.manager.wait_until_finished()
      self.manager.close()

  def last_saved_step(self) -> int | None:
    return self.manager.latest_step()

  def finish(self, state: Any, extra: dict | None = None, hint: str = '') -> None:
    """Saves the final (or stopped) state, waits for every save to land, and closes."""
    self.save(int(state.step), state, force=True, extra=extra, hint=hint)
    self.close()


@contextlib.contextmanager
def stopping_safely(ckpt: Checkpointer, current_step: Callable[[], int]):
  """Around a run loop: Ctrl-C or a fault of the machine (an `OSError`: a full disk) lets the
  in-flight checkpoint land first. Ctrl-C becomes `errors.Interrupted`, one line saying
  where a rerun resumes; the `OSError` is raised again for its one line."""
  try:
    yield
  except KeyboardInterrupt:
    saved = ckpt.settle()
    where = f'from step {saved}' if saved is not None else 'from the start (no checkpoint yet)'
    raise errors.Interrupted(f'interrupted at step {current_step()}; rerun the same command '
                                f'to resume {where}') from None
  except OSError:
    with contextlib.suppress(Exception):
      ckpt.settle()
    raise


def read_jsonl(path: str) -> list[dict]:
  """The records of a JSON-lines file; [] when it does not exist. A last line cut by a crash
  mid-write is dropped, and said on stderr; a damaged line before it is a `CheckpointError`."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  records = []
  for number, line in enumerate(lines, start=1):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if number < len(lines):
        raise CheckpointError(f'{path} line {number} is not JSON (the file was edited or '
                              f'damaged); restore it or move it aside') from None
      import sys
      print(f'{path}: its last line was cut (a crash mid-write); dropped, the run resumes from '
            f'its last checkpoint', file=sys.stderr)
  return records


def write_jsonl(path: str, records: list[dict]) -> None:
  """Rewrites a JSON-lines file atomically (the history of a resumed run is cut to its step)."""
  writers.write_lines_atomic(path, [json.dumps(record) + '\n' for record in records])
