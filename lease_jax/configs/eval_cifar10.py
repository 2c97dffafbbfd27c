"""Architecture evaluation on CIFAR-10 with DARTS's recipe (an accelerator's job: 600 epochs).

  lease-train --config=configs/eval_cifar10.py --genotype=runs/search_cifar10/genotype.json \
      --workdir=runs/eval_cifar10 --config.data.data_dir=~/tensorflow_datasets
  lease-train --config=configs/eval_cifar10.py --genotype=DARTS_V2 --workdir=runs/eval_darts_v2

NetworkCIFAR with 20 cells and C=36 (3.3 M parameters for DARTS_V2), batch 96, SGD 0.025 with
momentum 0.9 and weight decay 3e-4, cosine to 0 over 600 epochs, gradient clip 5, auxiliary head
weight 0.4, drop path 0.2 (ramped), cutout 16, random crop (pad 4) and flip, the whole training
set (50k) for training and the test set (10k) for the reported error.
"""

from lease_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'tfds'
  config.data.name = 'cifar10'
  config.data.augment = 'crop_flip'
  config.data.padding = 4
  config.data.workers = 4
  config.train.channels = 36
  config.train.layers = 20
  config.train.auxiliary = True
  config.train.auxiliary_weight = 0.4
  config.train.drop_path_prob = 0.2
  config.train.cutout = 16
  config.train.augment = 'crop_flip'
  config.train.epochs = 600
  config.train.batch_size = 96
  config.train.eval_batch_size = 500
  config.train.learning_rate = 0.025
  config.train.learning_rate_min = 0.0
  config.train.eval_every_epochs = 10
  config.train.log_every = 100
  config.train.checkpoint_every = 2000
  return config
