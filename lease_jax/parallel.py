"""Data parallelism on a device mesh: `jax.jit` with `NamedSharding` (no pmap, no shard_map).

The global batch is split along the mesh's 'data' axis; parameters and optimizer states are
replicated. Every program (the jitted search step or each jitted piece of it) is then partitioned
by XLA's SPMD partitioner: a mean over the batch (a loss, a BatchNorm statistic) becomes a
cross-device reduction, so gradients are averaged exactly once by construction; there is no
hand-written `pmean` that could double count.

BatchNorm statistics (`parallel.batch_norm`): 'global' normalises with the statistics of the
global batch (as on one device); 'per_device' with each device's share of it, as PyTorch's
DataParallel does. The latter is implemented as BatchNorm over `num_devices` equal groups of the
batch, so one device computing a batch of the same global size gives the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lease_jax import errors

BATCH_NORM = ('global', 'per_device')


def make_mesh(config) -> Mesh | None:
  """A 1-D 'data' mesh over `config.parallel.num_devices` devices (0: all); None for one."""
  cfg = config.get('parallel', None)
  wanted = int(cfg.num_devices) if cfg is not None else 1
  devices = jax.devices()
  n = len(devices) if wanted == 0 else wanted
  if n > len(devices):
    raise errors.UserError(f'parallel.num_devices = {wanted} but only {len(devices)} devices '
                              f'exist (0 uses them all)')
  if cfg is not None and cfg.batch_norm not in BATCH_NORM:
    raise errors.UserError(f'parallel.batch_norm {cfg.batch_norm!r}; accepted: {", ".join(BATCH_NORM)}')
  if n == 1:
    return None
  return Mesh(np.asarray(devices[:n]), ('data',))


def bn_groups(config, mesh: Mesh | None) -> int:
  """BatchNorm statistic groups: the number of devices for 'per_device', else 1."""
  cfg = config.get('parallel', None)
  if cfg is None or cfg.batch_norm == 'global':
    return 1
  return mesh.size if mesh is not None else 1


def replicate(tree, mesh: Mesh | None):
  """Every leaf copied whole to every device of the mesh (every process holds the same values).

  Built from host values with `make_array_from_callback`: in a multi-process run, `device_put`
  onto a mesh spanning processes gave arrays whose shards orbax could not read (jax 0.10.2).
  """
  if mesh is None:
    return tree
  sharding = NamedSharding(mesh, P())

  def put(x):
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def shard_batch(batch: dict, mesh: Mesh | None, keys=('image', 'label')) -> dict:
  """This process's rows of a global batch -> global arrays sharded along 'data'."""
  inputs = {k: batch[k] for k in keys}
  if mesh is None:
    return {k: jnp.asarray(v) for k, v in inputs.items()}
  sharding = NamedSharding(mesh, P('data'))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in inputs.items()}
