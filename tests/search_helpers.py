"""Float64 for the derivative checks: the context they run in, and a tiny search's state and
inputs on the real networks."""

import contextlib

import jax
import jax.numpy as jnp

from lease_jax import builders, data, lease


@contextlib.contextmanager
def float64():
  """64-bit floats, with nothing compiled meanwhile written to the persistent compilation cache.

  jax 0.10.2 segfaulted five times in this suite's CI-like runs while (de)serialising a float64
  program for the shared cache: writing one from a compile thread (test_pc_darts), and loading one
  in the main thread (test_hypergrad's K-step checks; the loads run on XLA's thread pool). Never a
  float32 program, of many more. A program that is never written is never loaded: with the write
  threshold of compile time out of reach, jax neither serialises nor stores float64 programs
  (`compiler._cache_write` checks it first), and their look-ups find nothing to load."""
  threshold = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1e9)
  try:
    with jax.enable_x64(True):
      yield
  finally:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', threshold)


def float64_search(config):
  """(search, state, train batch, val batch, hypergradient inputs) of `config`'s step 0, every
  floating array in float64 (call inside `float64()`)."""
  info, train_source, _ = data.load_sources(config.data)
  train, val = builders.search_streams(config, info, train_source)
  search = builders.build_search(config, info, train.steps_per_epoch)
  as64 = lambda tree: jax.tree.map(
      lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
  state = as64(search.init_state(config.seed))
  batches = [as64(builders.to_device(s.batch(0))) for s in (train, val)]
  return search, state, batches[0], batches[1]


def hypergradient_inputs(search, state, train, val):
  """The keyword arguments of `hypergrad.hypergradient` at `state`."""
  return dict(E=state.explainer, A=state.alphas, W=state.audience,
              explainer_state=state.explainer_opt_state,
              audience_state=state.audience_opt_state, train=train, val=val,
              delta0=lease.virtual_start(search.spec, state, train['image']))
