"""nb201_cifar10_darts_1st.py on CIFAR-100.

  lease-search --config=configs/nb201_cifar100_darts_1st.py --workdir=runs/nb201_c100_darts_1st \
      --config.data.data_dir=~/tensorflow_datasets
"""

from lease_jax.configs import nb201_cifar10_darts_1st


def get_config():
  config = nb201_cifar10_darts_1st.get_config()
  config.data.name = 'cifar100'
  return config
