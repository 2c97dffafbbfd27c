"""Exact against approximate hypergradients along a short search (digits; see lease_jax/compare.py).

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
  config.compare = ml_collections.ConfigDict(dict(
      points=4, every=5,
      # see lease_jax/compare.py: the modes, the finite difference at three radii, the official
      # code's explanations, and DARTS-2nd's own objective (γ = 0)
      settings=('exact', 'hvp', 'fd_0.001', 'fd_0.01', 'fd_0.1', 'first_order', 'official_sign',
                'darts2_hvp', 'darts2_fd_0.01', 'darts2_first_order'),
      timeout_s=3600,           # a setting's process that runs longer is reported, not waited on
      # kernels of the single-program `exact` setting ('' = explainer.impl): 'slices' unrolls
      # every depthwise convolution into k² ops, which a second-order whole-chain program
      # cannot compile in reasonable time; 'xla' computes the same function
      exact_impl='',
      # the setting every other is compared with ('' = exact if computed, else hvp): e.g. a long
      # unroll, 'unroll_40', standing in for the converged hypergradient
      reference='',
  ))
  return config
