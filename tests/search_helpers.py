"""A tiny search's state and inputs in float64, for the derivative checks on the real networks."""

import jax
import jax.numpy as jnp

from lease_jax import builders, data, lease


def float64_search(config):
  """(search, state, train batch, val batch, hypergradient inputs) of `config`'s step 0, every
  floating array in float64 (call inside `jax.enable_x64(True)`)."""
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
