"""Compiling ahead: the outermost recorded programs, once each; the real call compiles nothing."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lease_jax import precompile

import mappings

_compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kwargs: _compiles.append(event)
    if event == '/jax/core/compile/backend_compile_duration' else None)


@precompile.jit
def _inner(x):
  return jnp.sin(x) * 2.0


@precompile.jit(static_argnames=('power',))
def _outer(x, power):
  return _inner(x) ** power + 1.0


def _step(x, y):
  # `_inner` inside `_outer` is inlined (no program of its own); called directly on y's shape it
  # is one; `_outer` twice with the same shapes is one program, with another static value two.
  return _outer(x, power=2), _outer(x, power=2), _outer(x, power=3), _inner(y)


def test_compile_ahead_compiles_the_outermost_programs_and_the_call_compiles_nothing():
  x, y = jnp.linspace(0.0, 1.0, 5), jnp.ones((2, 3))
  calls = precompile.record_calls(_step, x, y)
  assert [(call[1][0].shape, call[2]) for call in calls] == [
      ((5,), {'power': 2}), ((5,), {'power': 3}), ((2, 3), {})]
  assert all(isinstance(call[1][0], jax.ShapeDtypeStruct) for call in calls)
  before = len(_compiles)
  assert precompile.compile_ahead(_step, x, y, workers=2) == 3
  assert len(_compiles) - before == 3
  compiled = len(_compiles)
  out = _step(x, y)
  assert len(_compiles) == compiled  # every program was already compiled
  np.testing.assert_allclose(out[2], (2 * np.sin(np.linspace(0, 1, 5))) ** 3 + 1, rtol=1e-6)
  # A function that calls no recorded program has nothing to compile ahead.
  assert precompile.record_calls(lambda: None) == []


def test_compile_ahead_keeps_the_callers_float64_and_matmul_precision():
  # jax's context settings are thread-local: the compiling threads must see the caller's, or they
  # build float32 programs that the float64 call cannot use.
  with jax.enable_x64(True), jax.default_matmul_precision('highest'):
    x = jnp.linspace(0.0, 1.0, 7, dtype=jnp.float64)
    y = jnp.ones((3, 3), jnp.float64)
    assert precompile.compile_ahead(_step, x, y, workers=2) == 3
    compiled = len(_compiles)
    out = _step(x, y)
    assert len(_compiles) == compiled
    assert out[0].dtype == jnp.float64


def test_compile_all_under_a_trace_compiles_nothing():
  # `jax.eval_shape(lambda: search.init_state(0))` asks for shapes only: its compile-ahead of the
  # init programs would compile full-size programs that nothing runs.
  def shapes_only(x):
    assert precompile.compile_all([(jax.jit(_inner.__wrapped__), (x,), {})]) == [None]
    return _inner(x)
  x = jnp.ones(11)
  before = len(_compiles)
  assert jax.eval_shape(shapes_only, x).shape == (11,)
  assert len(_compiles) == before


def test_compile_all_returns_the_programs_built_with_the_options_asked():
  # A run-once program (an init) compiled with cheap options: the returned programs compute what
  # the functions do, in the order given, whatever order they were compiled in.
  x, y = jnp.linspace(0.0, 1.0, 9), jnp.ones((4, 2))
  calls = [(jax.jit(lambda a: jnp.cos(a) * 3.0), (x,), {}), (jax.jit(lambda a: a.sum(0)), (y,), {})]
  programs = precompile.compile_all(calls, workers=2,
                                    compiler_options=precompile.run_once_options())
  assert len(programs) == 2
  for program, (fn, args, _) in zip(programs, calls):
    np.testing.assert_allclose(program(*args), fn(*args), rtol=1e-6)
  assert precompile.run_once_options()  # on CPU: LLVM's optimisation off


@pytest.mark.skipif(not os.path.exists('/proc/self/maps'), reason='counts Linux mappings')
def test_released_programs_give_their_memory_mappings_back():
  """What the suite's release after each file rests on (conftest.py): each compiled CPU program
  holds memory mappings until jax's caches drop it."""
  before = mappings.count()
  programs = [jax.jit(lambda x, k=k: jnp.sin(x) * k + 1.0) for k in range(60)]
  for k, program in enumerate(programs):
    program(jnp.ones((k + 1,))).block_until_ready()
  grown = mappings.count()
  assert grown >= before + 60
  mappings.release_compiled_programs()
  assert mappings.count() <= grown - 60
