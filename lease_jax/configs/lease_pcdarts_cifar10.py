"""LeaSE on the PC-DARTS base, CIFAR-10: PC-DARTS's network and recipe, the exact hypergradient.

  lease-search --config=configs/lease_pcdarts_cifar10.py --workdir=runs/lease_pcdarts_cifar10 \
      --config.data.data_dir=~/tensorflow_datasets

`pcdarts_cifar10.py` (partial channels K = 4 with β, batch 256, SGD 0.1 cosine to 0, Adam 6e-4,
50 epochs with 15 of warm-up) with LeaSE on top: γ = 1, a ResNet-18 audience (width 64) at
its own recipe (SGD 0.025 cosine, as `search_cifar10.py`), the library's default explanations,
and the exact hypergradient through the unrolled E → δ' → W steps (`hvp`). The official LeaSE
code runs a PC-DARTS network too, first order, without the audience's path to A.
"""

from lease_jax.configs import pcdarts_cifar10


def get_config():
  config = pcdarts_cifar10.get_config()
  config.search.mode = 'hvp'
  config.search.gamma = 1.0
  config.audience.width = 64
  return config
