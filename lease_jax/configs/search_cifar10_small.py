"""A real LeaSE search on CIFAR-10 (JPEG) that fits a 2-core CPU in about half an hour.

  mkdir -p /data/cifar10-jpeg && tar -xzf cifar10-jpeg.tar.gz -C /data/cifar10-jpeg
  lease-search --config=configs/search_cifar10_small.py --workdir=runs/c10_small \
      --config.data.data_dir=/data/cifar10-jpeg

A class-balanced 2,000 images of the CIFAR-10 training set (1,000 search-train, 1,000
search-val), a 3-cell supernet (C = 8), a width-16 ResNet-18 audience, batch 16, 4 epochs (248
iterations), the exact `hvp` hypergradient and the library's default explanations.
`experiments/results/cifar10_small_search/` holds its results.
"""

from lease_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'image_folder'
  config.data.name = 'cifar10'
  config.data.data_dir = ''           # the extracted archive's root (holding train/ and test/)
  config.data.max_examples = 2000
  config.data.augment = 'crop_flip'
  config.data.padding = 4
  config.data.workers = 2
  config.search.epochs = 4
  config.search.batch_size = 16
  config.explainer.layers = 3
  config.explainer.channels = 8
  config.audience.width = 16
  return config
