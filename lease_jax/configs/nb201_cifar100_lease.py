"""nb201_cifar10_lease.py on CIFAR-100.

  lease-search --config=configs/nb201_cifar100_lease.py --workdir=runs/nb201_c100_lease \
      --config.data.data_dir=~/tensorflow_datasets
"""

from lease_jax.configs import nb201_cifar10_lease


def get_config():
  config = nb201_cifar10_lease.get_config()
  config.data.name = 'cifar100'
  return config
