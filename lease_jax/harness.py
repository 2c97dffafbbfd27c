"""The run harness shared by the search (`search.py`) and the evaluation (`evaluate.py`) loops.

What makes a run resumable and its outputs honest lives here once:

  * the workdir check before anything is loaded (`check_workdir`);
  * `RunRecord`: the checkpointer (with its different-config guard), the history cut back to the
    restored step on resume, the running means of the logging window and of the epoch (restored
    from the checkpoint, so a resumed run's epoch means are exact), and the order of an epoch's
    end: the history (and the loop's other outputs) first, then the checkpoint — a run stopped in
    between resumes from the previous checkpoint and cuts the history back to it;
  * the stop of a diverged run: the last good checkpoint and outputs stay, `summary.json` says
    why.
"""

from __future__ import annotations

import os
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
    self.elapsed_before = self.history[-1]['elapsed_s'] if self.history else 0.0
    self.window = writers.Averager.from_json(self.ckpt.extra.get('window'))
    self.epoch = writers.Averager.from_json(self.ckpt.extra.get('epoch'))
    return state, resumed

  def add(self, metrics: Mapping[str, Any]) -> None:
    """A step's metrics into both running means."""
    self.window.add(metrics)
    self.epoch.add(metrics)

  def sums(self) -> dict:
    """The running means' state, saved with every checkpoint."""
    return {'window': self.window.to_json(), 'epoch': self.epoch.to_json()}

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
