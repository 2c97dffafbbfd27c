"""Shared test settings: small, deterministic, CPU."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

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
