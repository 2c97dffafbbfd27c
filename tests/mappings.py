"""The test processes' memory mappings: how many, the kernel's limit, and releasing jax's
compiled programs (each CPU executable holds mappings of its own; see conftest.py)."""

import gc

import jax


def count() -> int:
  """How many memory mappings this process holds (Linux; 0 where /proc is not there)."""
  try:
    with open('/proc/self/maps', 'rb') as f:
      return sum(1 for _ in f)
  except OSError:
    return 0


def limit() -> int:
  """The kernel's limit of mappings per process (`vm.max_map_count`; Linux's default if unread)."""
  try:
    with open('/proc/sys/vm/max_map_count') as f:
      return int(f.read())
  except (OSError, ValueError):
    return 65530


def release_compiled_programs() -> None:
  """Drops every compiled program jax keeps in memory (later calls load or compile again)."""
  jax.clear_caches()
  gc.collect()
