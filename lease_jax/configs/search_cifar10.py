"""LeaSE search on CIFAR-10 with the paper's settings (an accelerator's job: 50 epochs, 19,550 steps).

  lease-search --config=configs/search_cifar10.py --workdir=runs/search_cifar10 \
      --config.data.data_dir=~/tensorflow_datasets
  # no TensorFlow, the JPEG archive of ../shared/data extracted to /data/cifar10-jpeg:
  lease-search --config=configs/search_cifar10.py --workdir=runs/search_cifar10 \
      --config.data.source=image_folder --config.data.data_dir=/data/cifar10-jpeg

DARTS's search settings (8 cells, C=16, batch 64, SGD 0.025 cosine to 0.001, Adam 3e-4 on A),
the 25k/25k split of the training set, γ = 1 and a ResNet-18 audience (width 64).
"""

from lease_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'tfds'
  config.data.name = 'cifar10'
  config.data.augment = 'crop_flip'
  config.data.padding = 4
  config.data.workers = 4
  config.search.epochs = 50
  config.search.batch_size = 64
  config.search.log_every = 50
  config.search.checkpoint_every = 500
  config.explainer.channels = 16
  config.explainer.layers = 8
  config.audience.width = 64
  # The evaluation network of the found cell (`lease-train` with this config).
  config.train.channels = 36
  config.train.layers = 20
  config.train.auxiliary = True
  config.train.cutout = 16
  config.train.augment = 'crop_flip'
  config.train.epochs = 600
  config.train.batch_size = 96
  return config
