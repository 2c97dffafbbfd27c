"""Data parallelism on 4 CPU devices (conftest forces them): the same new state as on 1 device.

Tolerance: the sharded programs sum the batch in a different order (per device, then across
devices), so results agree to float32 rounding, not bitwise: relative 1e-4 on every leaf of the
new state (measured differences are ~1e-6).
"""

import dataclasses

import jax
import numpy as np
import pytest

from lease_jax import builders, data, evaluate, lease, parallel, search_space
from lease_jax.configs import tiny

MODES = ('first_order', 'hvp', 'finite_difference', 'exact')
RTOL, ATOL = 1e-4, 1e-6


def _config(num_devices, batch_norm='global'):
  config = tiny.get_config()
  config.parallel.num_devices = num_devices
  config.parallel.batch_norm = batch_norm
  return config


def _assert_trees_close(a, b, rtol=RTOL, atol=ATOL):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                                                       atol=atol), a, b)


def test_four_devices_are_available():
  assert jax.device_count() == 4


@pytest.fixture(scope='module')
def search_setup():
  config = _config(4)
  info, train_source, _ = data.load_sources(config.data)
  train, val = builders.search_streams(config, info, train_source)
  batches = (train.batch(0), val.batch(0))
  search = builders.build_search(config, info, train.steps_per_epoch)
  return config, search, batches


@pytest.mark.parametrize('mode', MODES)
def test_search_iteration_equals_one_device(search_setup, mode):
  config, search, (train, val) = search_setup
  spec = dataclasses.replace(search.spec, mode=mode)
  mesh = parallel.make_mesh(config)
  state = search.init_state(config.seed)
  step = lease.make_step(spec, jit_whole=mode == 'exact')
  one, one_metrics = step(state, parallel.shard_batch(train, None), parallel.shard_batch(val, None))
  sharded_state = parallel.replicate(state, mesh)
  four, four_metrics = step(sharded_state, parallel.shard_batch(train, mesh),
                            parallel.shard_batch(val, mesh))
  assert four.alphas['alphas_normal'].sharding.mesh.size == 4  # it really ran on the mesh
  _assert_trees_close(four, one)
  _assert_trees_close(four_metrics, one_metrics, rtol=1e-3)


def test_per_device_batch_norm_is_grouped_statistics(search_setup):
  """per_device on 4 devices == BatchNorm over 4 groups of the batch on one device; != global."""
  config, _, (train, val) = search_setup
  info = data.load_sources(config.data)[0]
  config = _config(4, 'per_device')
  config.search.mode = 'first_order'
  mesh = parallel.make_mesh(config)
  assert parallel.bn_groups(config, mesh) == 4
  grouped = builders.build_search(config, info, 100, bn_groups=4)
  plain = builders.build_search(config, info, 100, bn_groups=1)
  state = grouped.init_state(config.seed)
  step_grouped = lease.make_step(grouped.spec, jit_whole=True)
  four, _ = step_grouped(parallel.replicate(state, mesh), parallel.shard_batch(train, mesh),
                         parallel.shard_batch(val, mesh))
  state = grouped.init_state(config.seed)  # the jitted step donated the first copy
  one, _ = step_grouped(state, parallel.shard_batch(train, None),
                        parallel.shard_batch(val, None))
  _assert_trees_close(four, one)
  state = plain.init_state(config.seed)
  global_stats, _ = lease.make_step(plain.spec, jit_whole=True)(
      state, parallel.shard_batch(train, None), parallel.shard_batch(val, None))
  differences = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                                             global_stats.alphas, one.alphas))
  assert max(differences) > 1e-7


def test_evaluation_training_step_equals_one_device():
  config = _config(4)
  config.train.drop_path_prob = 0.3
  info, train_source, test_source = data.load_sources(config.data)
  train, _ = evaluate.train_streams(config, info, train_source, test_source)
  genotype = search_space.load_genotype('DARTS_V2')
  spec, init_state = evaluate.build(config, info, genotype, train.steps_per_epoch)
  mesh = parallel.make_mesh(config)
  step = jax.jit(lambda s, b: evaluate.train_step(spec, s, b))
  state = init_state(config.seed).replace(step=jax.numpy.asarray(150))  # drop path is on
  batch = train.batch(0)
  one, one_metrics = step(state, parallel.shard_batch(batch, None))
  four, four_metrics = step(parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh))
  _assert_trees_close(four, one)
  _assert_trees_close(four_metrics, one_metrics, rtol=1e-4)


def test_resume_on_fewer_devices(tmp_path):
  """A search checkpointed on 4 devices resumes on 1 and ends where a 1-device run ends."""
  from lease_jax import search
  config = _config(4)
  config.search.mode = 'first_order'
  config.search.max_steps = 2
  search.train_and_evaluate(config, str(tmp_path / 'moved'))
  config = _config(1)
  config.search.mode = 'first_order'
  config.search.max_steps = 4
  resumed = search.train_and_evaluate(config, str(tmp_path / 'moved'))
  reference = search.train_and_evaluate(config, str(tmp_path / 'reference'))
  assert resumed['step'] == reference['step'] == 4
  a = search_space.load_alphas(str(tmp_path / 'moved' / 'alphas.json'))
  b = search_space.load_alphas(str(tmp_path / 'reference' / 'alphas.json'))
  _assert_trees_close(a, b)


def test_per_device_batch_norm_refuses_a_device_count_change(tmp_path):
  from lease_jax import checkpoint, search
  config = _config(4, 'per_device')
  config.search.mode = 'first_order'
  config.search.max_steps = 1
  search.train_and_evaluate(config, str(tmp_path))
  config = _config(1, 'per_device')
  config.search.mode = 'first_order'
  with pytest.raises(checkpoint.CheckpointError, match=r'batch_norm_groups \(4 -> 1\)'):
    search.train_and_evaluate(config, str(tmp_path))
