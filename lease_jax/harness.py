"""The run harness shared by the search (`search.py`) and the evaluation (`evaluate.py`) loops.

What makes a run resumable and its outputs honest lives here once:

  * the workdir check before anything is loaded (`check_workdir`), and one run per workdir
    (`one_run`: a lock taken before anything is written);
  * `RunRecord`: the checkpointer (with its different-config guard), the history cut back to the
    restored step on resume, the running means of the logging window and of the epoch (restored
    from the checkpoint, so a resumed run's epoch means are exact), and the order of an epoch's
    end: the history (and the loop's other outputs) first, then the checkpoint — a run stopped in
    between resumes from the previous checkpoint and cuts the history back to it;
  * the stop of a diverged run: the last good checkpoint and outputs stay, `summary.json` says
    why.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import sys
from typing import Any, Callable, Mapping

from lease_jax import checkpoint, errors, writers


def check_workdir(workdir: str) -> None:
  """Refuses a workdir that cannot hold a run, before anything is loaded or compiled: empty, an
  existing file (`UserError`), or not writable (`EnvironmentFault`)."""
  if not workdir or not workdir.strip():
    raise errors.UserError('--workdir is empty; name a directory for the run (it is created)')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.UserError(f'--workdir {workdir!r} is a file; name a directory')
  parent = workdir if os.path.isdir(workdir) else os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.access(parent, os.W_OK | os.X_OK):
    raise errors.EnvironmentFault(f'--workdir {workdir!r}: {parent!r} is not writable')


LOCK_FILE = '.lock'


@contextlib.contextmanager
def one_run(workdir: str, prog: str, chief: bool = True):
  """Holds the workdir for this run: an exclusive `flock` on `workdir/.lock`, taken before the
  run writes anything and released on every exit (the kernel releases it when the process
  dies). A second process is refused with one line naming the running one (`UserError`) and
  touches nothing; a lock left by a dead process (its record still in the file) is taken over,
  said in one line. Only the chief process of a multi-host run takes it (the others share the
  workdir with it)."""
  if not chief:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 500, 0).decode(errors='replace').strip() or 'another process'
      raise errors.UserError(f'workdir {workdir!r} is in use by {holder}; wait for it to end, '
                             f'or use another --workdir') from None
    previous = os.pread(fd, 500, 0).decode(errors='replace').strip()
    if previous:
      print(f'{prog}: {workdir}: took over the lock left by {previous}, which is no longer '
            f'running', file=sys.stderr)
    started = datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'process {os.getpid()} ({prog}, started {started})'.encode(), 0)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)  # a clean end leaves no record to take over
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


class RunRecord:
  """A run's persistent record in its workdir: checkpoints, `history.jsonl`, running means.

  Attributes:
    ckpt: the `checkpoint.Checkpointer` (refuses a workdir holding another config's run).
    history: the per-epoch entries up to the restored step.
    elapsed_before: the wall seconds the run had spent before this process (0 for a new run).
    window, epoch: the running means of the logging window and of the epoch.
  """

  def __init__(self, workdir: str, run_config: dict, keep: int, is_chief: bool):
    self.workdir, self.is_chief = workdir, is_chief
    self.ckpt = checkpoint.Checkpointer(workdir, run_config, keep)
    self.history_path = os.path.join(workdir, 'history.jsonl')
    self.history: list[dict] = []
    self.elapsed_before = 0.0
    self.window, self.epoch = writers.Averager(), writers.Averager()

  def restore_or(self, init_state: Any) -> tuple[Any, bool]:
    """(state, resumed): the latest checkpoint, else `init_state`; the history and the running
    means are those of the restored step."""
    state, resumed = self.ckpt.restore_or(init_state)
    start = int(state.step)
    self.history = [e for e in checkpoint.read_jsonl(self.history_path) if e['step'] <= start]
    # A history whose last entry was lost (a line cut by a crash, dropped by `read_jsonl`) gets
    # it back from the checkpoint, which carries the last entry it had been written after.
    last = self.ckpt.extra.get('last_entry')
    if last and last['step'] <= start and (not self.history or
                                           self.history[-1]['step'] < last['step']):
      self.history.append(last)
      if self.is_chief:
        checkpoint.write_jsonl(self.history_path, self.history)
    self.elapsed_before = self.history[-1]['elapsed_s'] if self.history else 0.0
    self.window = writers.Averager.from_json(self.ckpt.extra.get('window'))
    self.epoch = writers.Averager.from_json(self.ckpt.extra.get('epoch'))
    return state, resumed

  def add(self, metrics: Mapping[str, Any]) -> None:
    """A step's metrics into both running means."""
    self.window.add(metrics)
    self.epoch.add(metrics)

  def sums(self) -> dict:
    """What every checkpoint carries besides the state: the running means, and the history's
    last entry (so that a history that loses its last line can be mended on resume)."""
    sums = {'window': self.window.to_json(), 'epoch': self.epoch.to_json()}
    if self.history:
      sums['last_entry'] = self.history[-1]
    return sums

  def save(self, step: int, state: Any, hint: str) -> None:
    """A checkpoint of `state` at `step` (never of a non-finite state)."""
    self.ckpt.save(step, state, extra=self.sums(), hint=hint)

  def end_epoch(self, step: int, state: Any, entry: dict, hint: str,
                outputs: Callable[[], None] | None = None) -> None:
    """Appends the epoch's entry; writes the history and (`outputs`) the chief's other files;
    then checkpoints — in that order (see the module docstring)."""
    self.history.append(entry)
    if self.is_chief:
      checkpoint.write_jsonl(self.history_path, self.history)
      if outputs is not None:
        outputs()
    self.save(step, state, hint)

  def finish(self, state: Any, hint: str) -> None:
    """The final (or stopped) state saved, every save landed, the checkpointer closed."""
    self.ckpt.finish(state, extra=self.sums(), hint=hint)

  def stop_non_finite(self, writer, error: Exception, total_steps: int,
                      fields: Mapping[str, Any]) -> None:
    """A diverged run: the in-flight saves of good states land, `summary.json` says where and why
    it stopped (with the loop's `fields`), the writer closes."""
    self.ckpt.close()
    if self.is_chief:
      writers.write_json_atomic(os.path.join(self.workdir, 'summary.json'), {
          'finished': False, 'stopped': str(error), 'step': self.ckpt.last_saved_step(),
          'total_steps': total_steps, **fields}, indent=1)
      writer.write_text_line(f'stopped: {error}')
    writer.close()
