"""Compiling a step's programs on every core before the step first runs.

XLA compiles one program on one core, and the search step on CPU is a chain of large programs
(the jitted pieces of `hypergrad`) that a first step would compile one after the other while
the other cores idle. `compile_ahead(fn, *args)` traces `fn` abstractly (`jax.eval_shape`: no
arithmetic, nothing compiled), recording every call of a function made with `jit` below and its
argument shapes, then lowers and compiles those programs on a thread pool: XLA releases the GIL
while it compiles, so two cores compile two programs at once. jax keeps what `lower().compile()`
built in the same in-memory cache as a call, so the first real step then runs without compiling
them again (and with the persistent cache on, later runs load them from disk as before).

Only the outermost recorded calls are compiled: a recorded function called inside another one's
trace is inlined there, not a program of its own.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from typing import Any, Callable

import jax
import jax.extend.core

_state = threading.local()


def jit(fn: Callable | None = None, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)`, whose calls `compile_ahead` can record; usable as a decorator
  with or without arguments."""
  if fn is None:
    return functools.partial(jit, **jit_kwargs)
  jitted = jax.jit(fn, **jit_kwargs)

  @functools.wraps(fn)
  def call(*args, **kwargs):
    calls = getattr(_state, 'calls', None)
    if calls is None or _state.depth:
      return jitted(*args, **kwargs)
    calls.append((jitted, args, kwargs))
    _state.depth += 1
    try:
      return jitted(*args, **kwargs)
    finally:
      _state.depth -= 1

  call.lower = jitted.lower
  return call


def _abstract(tree):
  """Traced or concrete arrays -> `ShapeDtypeStruct`s (weak types kept: they are in the key)."""
  def leaf(x):
    if isinstance(x, (jax.Array, jax.core.Tracer)):
      aval = x.aval
      return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)
    return x
  return jax.tree.map(leaf, tree)


def record_calls(fn: Callable, *args, **kwargs) -> list[tuple[Any, tuple, dict]]:
  """The distinct outermost recorded calls that `fn(*args, **kwargs)` makes, with abstract
  arguments, in the order first made."""
  _state.calls, _state.depth = [], 0
  try:
    jax.eval_shape(functools.partial(fn, **kwargs), *args)
    calls = _state.calls
  finally:
    _state.calls = None
  distinct, seen = [], set()
  for jitted, call_args, call_kwargs in calls:
    call_args, call_kwargs = _abstract(call_args), _abstract(call_kwargs)
    leaves, structure = jax.tree.flatten((call_args, call_kwargs))
    key = (id(jitted), structure, tuple(
        (x.shape, x.dtype, x.weak_type) if isinstance(x, jax.ShapeDtypeStruct) else x
        for x in leaves))
    if key not in seen:
      seen.add(key)
      distinct.append((jitted, call_args, call_kwargs))
  return distinct


def _equations(jaxpr) -> int:
  """The number of equations of `jaxpr` and of every jaxpr nested in its equations' params."""
  def nested(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
      return _equations(value.jaxpr)
    if isinstance(value, jax.extend.core.Jaxpr):
      return _equations(value)
    if isinstance(value, (tuple, list)):
      return sum(nested(v) for v in value)
    return 0
  return sum(1 + sum(nested(v) for v in eqn.params.values()) for eqn in jaxpr.eqns)


def run_once_options() -> dict[str, Any]:
  """XLA options for a program that runs once (an `init`): on CPU, LLVM's optimisation off,
  which halves the compile time of the supernet's init (20 → 11 s) and costs its single run
  hundredths of a second; initial weights then differ from an optimised build's in the last bit
  (~3e-8), the same on every run. No options elsewhere (accelerators compile these quickly)."""
  if jax.default_backend() != 'cpu':
    return {}
  return {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def compile_all(calls, workers: int | None = None,
                compiler_options: dict[str, Any] | None = None) -> list[Any]:
  """Lowers and compiles each `(jitted, args, kwargs)`, `workers` at a time (default: one per
  core); the arguments may be arrays or `ShapeDtypeStruct`s. Returns the compiled programs in
  the order of `calls`: with the default options a call of `jitted` itself finds them compiled
  (jax's in-memory cache); with `compiler_options` only the returned program has them. Interrupted
  (Ctrl-C), it empties the queue and re-raises at once; the programs being compiled cannot stop
  midway (a thread cannot leave XLA's compiler), and the command-line tools leave without waiting
  for them (`cli_utils.one_line_errors`). Called with traced arguments
  (inside `jax.jit`, `jax.eval_shape`, ...), it compiles nothing and returns a None for each
  call: the caller's calls will be traced, not run."""
  if any(isinstance(leaf, jax.core.Tracer) for call in calls for leaf in jax.tree.leaves(call[1:])):
    return [None] * len(calls)
  pending = queue.SimpleQueue()
  compiled = [None] * len(calls)
  # Largest first (the longest-processing-time rule): a large program started last would keep
  # one core compiling while the others idle. Size is the number of equations of the traced
  # program, nested ones included (tracing is cached: the recording already traced them).
  for index in sorted(range(len(calls)), key=lambda k: -_equations(
      calls[k][0].trace(*calls[k][1], **calls[k][2]).jaxpr.jaxpr)):
    pending.put(index)
  errors = []
  # jax's context settings are thread-local: a new thread would lower float64 programs as float32
  # (and at the default matmul precision), which the caller's call would then compile again.
  x64, precision = jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision

  def work():
    with jax.enable_x64(x64), jax.default_matmul_precision(precision):
      while True:
        try:
          index = pending.get_nowait()
        except queue.Empty:
          return
        jitted, args, kwargs = calls[index]
        try:
          lowered = jitted.lower(*args, **kwargs)
          compiled[index] = (lowered.compile(compiler_options) if compiler_options
                             else lowered.compile())
        except Exception as error:  # pylint: disable=broad-except  (re-raised by the caller)
          errors.append(error)
          return

  threads = [threading.Thread(target=work, name=f'compile_ahead_{k}')
             for k in range(min(workers or os.cpu_count() or 1, len(calls)))]
  for thread in threads:
    thread.start()
  try:
    for thread in threads:
      thread.join()
  except BaseException:
    while not pending.empty():
      try:
        pending.get_nowait()
      except queue.Empty:
        break
    raise
  if errors:
    raise errors[0]
  return compiled


def compile_ahead(fn: Callable, *args, workers: int | None = None, **kwargs) -> int:
  """Compiles every program that `fn(*args, **kwargs)` would compile through `jit`, `workers`
  at a time (default: one per core); returns how many."""
  calls = record_calls(fn, *args, **kwargs)
  compile_all(calls, workers)
  return len(calls)
