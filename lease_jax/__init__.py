"""lease_jax: Learning by Self-Explanation (LeaSE) for differentiable NAS, in JAX."""

__version__ = '0.1.0'
