"""Metric writers: TensorBoard event files and a human-readable log, clu's interface.

clu's `metric_writers` import TensorFlow at import time, so this package writes TensorBoard event
files with tensorboardX (pure Python) behind clu's interface: `write_scalars(step, {...})`,
`write_images(step, {...})`, `write_texts(step, {...})`, `flush()`, `close()`. Only process 0 of
a multi-host run writes (`just_logging` elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from typing import Any, Mapping

import numpy as np


class MetricWriter:
  """TensorBoard events in `logdir` plus `logdir/log.txt`; a no-op for other processes."""

  def __init__(self, logdir: str, just_logging: bool = False):
    self.just_logging = just_logging
    self._tb = None
    self._log = None
    if not just_logging:
      os.makedirs(logdir, exist_ok=True)
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(logdir, flush_secs=30)
      self._log = open(os.path.join(logdir, 'log.txt'), 'a')

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    values = {k: float(v) for k, v in scalars.items()}
    if self._tb is not None:
      for key, value in values.items():
        self._tb.add_scalar(key, value, step)
      self.write_text_line(f'step {step}: ' + ', '.join(
          f'{k}={v:.5g}' for k, v in sorted(values.items())))
    logging.debug('step %d: %s', step, values)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    if self._tb is not None:
      for key, image in images.items():
        self._tb.add_image(key, np.asarray(image), step, dataformats='HWC')

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    if self._tb is not None:
      for key, text in texts.items():
        self._tb.add_text(key, text, step)
        self.write_text_line(f'step {step}: {key}: {text}')

  def write_text_line(self, line: str) -> None:
    if self._log is not None:
      self._log.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")} {line}\n')
      self._log.flush()

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._log.close()
      self._tb = self._log = None


class Averager:
  """Means of step metrics since the last read (device values, one host sync per read)."""

  def __init__(self):
    self.sums, self.counts = {}, {}

  def add(self, metrics: Mapping[str, object]) -> None:
    for key, value in metrics.items():
      self.sums[key] = self.sums.get(key, 0.0) + value
      self.counts[key] = self.counts.get(key, 0) + 1

  def read(self) -> dict[str, float]:
    import jax
    values = jax.device_get(self.sums)
    out = {k: float(v) / self.counts[k] for k, v in values.items()}
    self.sums, self.counts = {}, {}
    return out

  def to_json(self) -> dict:
    """The running sums and counts (float32 sums are exact in JSON's doubles)."""
    import jax
    return {'sums': {k: float(v) for k, v in jax.device_get(self.sums).items()},
            'counts': dict(self.counts)}

  @classmethod
  def from_json(cls, saved: Mapping | None) -> 'Averager':
    """The averager `to_json` saved: it goes on summing exactly where it stopped."""
    averager = cls()
    if saved:
      averager.sums = {k: np.float32(v) for k, v in saved['sums'].items()}
      averager.counts = {k: int(v) for k, v in saved['counts'].items()}
    return averager


class _Quiet:
  """The progress bar of a process that does not report (multi-host, process > 0)."""

  def set_postfix(self, *args, **kwargs):
    pass

  def set_postfix_str(self, *args, **kwargs):
    pass

  def update(self, *args):
    pass

  def write(self, line: str) -> None:
    logging.info(line)

  def close(self):
    pass


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
  """A tqdm bar with ETA (steps/s smoothed), or a silent stand-in when not `enabled`."""
  if not enabled:
    return _Quiet()
  from tqdm import tqdm
  return tqdm(total=total, initial=initial, desc=desc, unit='step', dynamic_ncols=True,
              smoothing=0.1)


def write_lines_atomic(path: str, lines: list[str]) -> None:
  """Writes text atomically (temp file + rename) so a crash never leaves half a file; a failed
  write (a full disk) removes its temporary and leaves `path` as it was."""
  tmp = f'{path}.tmp'
  try:
    with open(tmp, 'w') as f:
      f.writelines(lines)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def write_json_atomic(path: str, data: Any, **dump_options) -> None:
  """Writes JSON atomically (`write_lines_atomic`)."""
  write_lines_atomic(path, [json.dumps(data, **dump_options), '\n'])


class CompileLog(logging.Handler):
  """While active, records every XLA compilation of at least `min_seconds` in `log.txt` (the
  program's name and seconds), and keeps the total. JAX reports them through `jax_log_compiles`;
  they are kept off the console."""

  _FINISHED = re.compile(r'Finished XLA compilation of (.+) in ([0-9.eE+-]+) sec')
  _LOGGERS = ('jax._src.dispatch', 'jax._src.interpreters.pxla', 'jax._src.compiler')

  def __init__(self, writer: MetricWriter, min_seconds: float = 1.0):
    super().__init__(level=logging.DEBUG)
    self.writer, self.min_seconds, self.total, self.count = writer, min_seconds, 0.0, 0

  def emit(self, record: logging.LogRecord) -> None:
    found = self._FINISHED.search(record.getMessage())
    if found:
      seconds = float(found.group(2))
      self.total += seconds
      self.count += 1
      if seconds >= self.min_seconds:
        self.writer.write_text_line(f'compiled {found.group(1)} in {seconds:.1f} s')

  def __enter__(self):
    import jax
    self._was = jax.config.jax_log_compiles
    jax.config.update('jax_log_compiles', True)
    self._saved = []
    for name in self._LOGGERS:
      logger = logging.getLogger(name)
      self._saved.append((logger, logger.propagate))
      logger.propagate = False
      logger.addHandler(self)
    return self

  def __exit__(self, *exc):
    import jax
    jax.config.update('jax_log_compiles', self._was)
    for logger, propagate in self._saved:
      logger.removeHandler(self)
      logger.propagate = propagate
    return False


class CompileTicker:
  """Says on the progress bar that the first step is compiling, with the elapsed time, until
  `done()`: a first run spends minutes there with nothing else to show."""

  def __init__(self, progress, what: str):
    import threading
    self.progress, self.what, self.started = progress, what, time.time()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._tick, daemon=True)
    self._thread.start()

  def _tick(self) -> None:
    import sys
    interval = 1.0 if sys.stderr.isatty() else 15.0  # a log file gets a line a quarter-minute
    while not self._stop.wait(interval):
      self.progress.set_postfix_str(
          f'compiling {self.what}, first run only (cached for later runs): '
          f'{time.time() - self.started:.0f} s', refresh=True)

  def done(self) -> float:
    """Stops the ticker; returns the seconds it ran."""
    if not self._stop.is_set():
      self._stop.set()
      self._thread.join()
      self.progress.set_postfix_str('', refresh=False)
    return time.time() - self.started
