"""Shared test settings: small, deterministic, CPU."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Four CPU devices for the data-parallel tests (test_parallel.py); everything else uses one.
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=4').strip()

import jax  # noqa: E402
import pytest  # noqa: E402

# Compile time dominates this suite (the programs are large, the arrays tiny): skip XLA's
# optimisation passes. Numerics are unchanged; only speed on large inputs would suffer.
jax.config.update('jax_disable_most_optimizations', True)


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats (numerical derivative checks)."""
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope='session')
def cli_env(tmp_path_factory):
  """Environment of the command-line tests' subprocesses: CPU, the suite's fast-compile setting,
  one compilation cache for the session (the first run compiles; the others load the same
  executables)."""
  cache = tmp_path_factory.mktemp('xla_cache')
  return dict(os.environ, JAX_PLATFORMS='cpu', JAX_DISABLE_MOST_OPTIMIZATIONS='true',
              LEASE_JAX_CACHE=str(cache), PYTHONUNBUFFERED='1')
