"""Shared by the command-line entry points: config files, JAX settings, one-line errors."""

from __future__ import annotations

import os

import jax

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')


def config_path(name: str) -> str:
  """The path of a packaged config file (`lease_jax/configs/<name>.py`, also `configs/`)."""
  return os.path.join(CONFIG_DIR, f'{name}.py')


def setup_jax(config=None) -> None:
  """Turns on JAX's persistent compilation cache, so that a run pays each compilation once.

  The cache lives in `$LEASE_JAX_CACHE` (default `~/.cache/lease_jax/xla`); set it empty to
  disable. A resumed or repeated run then starts in seconds instead of minutes.
  """
  del config
  cache = os.environ.get('LEASE_JAX_CACHE',
                         os.path.join(os.path.expanduser('~'), '.cache', 'lease_jax', 'xla'))
  if cache:
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 2.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
