"""Exact vs hvp vs finite-difference vs first-order hypergradients along a short search.

  lease-compare-grads --config=configs/compare_hypergrads.py --workdir=experiments/results/compare
  # real CIFAR-10 images (the JPEG archive of ../shared/data, extracted):
  lease-compare-grads --config=configs/compare_hypergrads.py --workdir=... \
      --config.data.source=image_folder --config.data.name=cifar10 \
      --config.data.data_dir=/tmp/cifar10-jpeg --config.data.augment=crop_flip \
      --config.data.padding=4
"""

import ml_collections

from lease_jax.configs import default


def get_config():
  config = default.get_config()
  config.search.mode = 'hvp'         # the trajectory's own mode
  config.search.batch_size = 16
  config.search.jit_whole_step = False
  # 3 cells (one of each kind and a normal one after a reduction) and XLA's kernels: the
  # single-program `exact` mode compiles in ~3 minutes here on 2 CPU cores.
  config.explainer.channels = 8
  config.explainer.layers = 3
  config.explainer.impl = 'xla'
  config.audience.width = 16
  config.compare = ml_collections.ConfigDict(dict(points=4, every=5))
  return config
