"""DARTS-1st on NAS-Bench-201, CIFAR-10 (γ = 0, first order: the reference's DARTS-V1).

  lease-search --config=configs/nb201_cifar10_darts_1st.py --workdir=runs/nb201_darts1
"""

from lease_jax.configs import nb201_cifar10_darts_2nd


def get_config():
  config = nb201_cifar10_darts_2nd.get_config()
  config.search.mode = 'first_order'
  return config
