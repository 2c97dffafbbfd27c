"""Exact against approximate hypergradients along a real search: CIFAR-10 (JPEG), the small
supernet (5 cells, C = 8), the library's default explanations.

  lease-compare-grads --config=configs/compare_hypergrads_cifar10.py \
      --workdir=runs/compare_cifar10 --config.data.data_dir=/tmp/cifar10-jpeg

20 points, 10 steps apart, of an hvp search on a class-balanced 5,000 images (2,500 + 2,500);
at each, every setting of `compare.settings` (lease_jax/compare.py). The search and every
setting run the CPU's fast kernels ('auto': 'slices', 6 s per hvp step here against 81 s with
'xla'), except `exact`, which compiles the whole unrolled chain as one program and so needs
XLA's (`compare.exact_impl`: the same function); if it does not finish within
`compare.timeout_s`, the report says so and `hvp` (tested equal to it) is the reference.
"""

from lease_jax.configs import compare_hypergrads


def get_config():
  config = compare_hypergrads.get_config()
  config.data.update(dict(source='image_folder', name='cifar10', data_dir='',
                          max_examples=5000, augment='crop_flip', padding=4, workers=2))
  config.explainer.layers = 5
  config.explainer.channels = 8
  config.explainer.impl = 'auto'
  config.audience.width = 16
  config.search.batch_size = 16
  # The cheap settings first, `exact` last: an interrupted study (resumed setting by setting)
  # holds the most settings, and the exact program's attempt cannot hold up the rest.
  config.compare.update(dict(points=20, every=10, timeout_s=3600, exact_impl='xla', settings=(
      'hvp', 'fd_0.001', 'fd_0.01', 'fd_0.1', 'first_order', 'official_sign', 'darts2_hvp',
      'darts2_fd_0.01', 'darts2_first_order', 'exact')))
  return config
