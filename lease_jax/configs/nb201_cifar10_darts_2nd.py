"""DARTS-2nd on NAS-Bench-201, CIFAR-10 (γ = 0, finite differences: the reference's DARTS-V2).

  lease-search --config=configs/nb201_cifar10_darts_2nd.py --workdir=runs/nb201_darts2

NB201's Table 5 reports this method collapsing to the all-`skip_connect` cell (54.30% test).
`--config.search.mode=hvp` gives DARTS-2nd with the exact second-order term.
"""

from lease_jax.configs import nb201_cifar10_lease


def get_config():
  config = nb201_cifar10_lease.get_config()
  config.search.gamma = 0.0
  config.search.mode = 'finite_difference'
  return config
