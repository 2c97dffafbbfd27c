"""DARTS second order (Liu et al., 2019) from the same code: γ = 0, finite-difference Hessian.

  lease-search --config=configs/darts_2nd.py --workdir=runs/darts_2nd
  lease-search --config=configs/darts_2nd.py --workdir=runs/darts_2nd_exact --config.search.mode=hvp

γ = 0 removes the explanation and audience stages, leaving DARTS's unrolled objective
L_val(E − ξ ∇_E L_train(E, A), A); `finite_difference` is DARTS's own approximation of its
second-order term, `hvp` computes it exactly.
"""

from lease_jax.configs import search_cifar10


def get_config():
  config = search_cifar10.get_config()
  config.search.gamma = 0.0
  config.search.mode = 'finite_difference'
  return config
