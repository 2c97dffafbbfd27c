"""pcdarts_cifar10.py on CIFAR-100.

  lease-search --config=configs/pcdarts_cifar100.py --workdir=runs/pcdarts_cifar100 \
      --config.data.data_dir=~/tensorflow_datasets
"""

from lease_jax.configs import pcdarts_cifar10


def get_config():
  config = pcdarts_cifar10.get_config()
  config.data.name = 'cifar100'
  return config
