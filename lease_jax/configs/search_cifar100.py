"""LeaSE search on CIFAR-100 (the paper's settings, as search_cifar10 with 100 classes).

  lease-search --config=configs/search_cifar100.py --workdir=runs/search_cifar100 \
      --config.data.data_dir=~/tensorflow_datasets
"""

from lease_jax.configs import search_cifar10


def get_config():
  config = search_cifar10.get_config()
  config.data.name = 'cifar100'
  return config
