"""LeaSE search on CIFAR-10 with the paper's settings (an accelerator's job: 50 epochs, 19,550 steps).

  lease-search --config=configs/search_cifar10.py --workdir=runs/search_cifar10 \
      --config.data.data_dir=~/tensorflow_datasets
  # no TensorFlow, the JPEG archive of ../shared/data extracted to /data/cifar10-jpeg:
  lease-search --config=configs/search_cifar10.py --workdir=runs/search_cifar10 \
      --config.data.source=image_folder --config.data.data_dir=/data/cifar10-jpeg

DARTS's search settings (8 cells, C=16, batch 64, SGD 0.025 cosine to 0.001, Adam 3e-4 on A),
the 25k/25k split of the training set, γ = 1 and a ResNet-18 audience (width 64).
"""

from lease_jax.configs import default, eval_cifar10


def get_config():
  config = default.get_config()
  evaluation = eval_cifar10.get_config()
  config.data = evaluation.data        # tfds CIFAR-10, crop (pad 4) and flip
  config.train = evaluation.train      # `lease-train` with this config: DARTS's evaluation
  config.search.epochs = 50
  config.search.batch_size = 64
  config.search.log_every = 50
  config.search.checkpoint_every = 500
  config.explainer.channels = 16
  config.explainer.layers = 8
  config.audience.width = 64
  return config
