"""Architecture evaluation on CIFAR-100 (DARTS's CIFAR recipe, 100 classes).

  lease-train --config=configs/eval_cifar100.py --genotype=runs/search_cifar100/genotype.json \
      --workdir=runs/eval_cifar100 --config.data.data_dir=~/tensorflow_datasets
"""

from lease_jax.configs import eval_cifar10


def get_config():
  config = eval_cifar10.get_config()
  config.data.name = 'cifar100'
  return config
