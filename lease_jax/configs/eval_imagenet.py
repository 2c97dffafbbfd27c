"""Architecture evaluation on ImageNet (mobile setting) with DARTS's recipe (8 accelerators).

  # tfds's imagenet2012 needs its manual download in <data_dir>/downloads/manual, and TensorFlow
  # once to prepare it; or an image folder root/{train,test}/<synset>/*.JPEG:
  lease-train --config=configs/eval_imagenet.py --genotype=runs/search_cifar10/genotype.json \
      --workdir=runs/eval_imagenet --config.data.data_dir=~/tensorflow_datasets \
      --config.parallel.num_devices=0

NetworkImageNet with 14 cells and C=48 (4.7 M parameters for DARTS_V2), batch 128 (global), SGD
0.1 momentum 0.9 weight decay 3e-5, learning rate ×0.97 per epoch over 250 epochs, label
smoothing 0.1, auxiliary weight 0.4, gradient clip 5, no drop path; random resized crop, flip
and colour jitter for training, resize 256 + centre crop 224 for evaluation (the validation split).
"""

from lease_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'tfds'
  config.data.name = 'imagenet2012'
  config.data.workers = 16
  config.train.network = 'imagenet'
  config.train.channels = 48
  config.train.layers = 14
  config.train.auxiliary = True
  config.train.auxiliary_weight = 0.4
  config.train.drop_path_prob = 0.0
  config.train.cutout = 0
  config.train.augment = 'imagenet_train'
  config.train.epochs = 250
  config.train.batch_size = 128
  config.train.eval_batch_size = 250
  config.train.learning_rate = 0.1
  config.train.lr_schedule = 'exponential'
  config.train.lr_decay = 0.97
  config.train.weight_decay = 3e-5
  config.train.label_smoothing = 0.1
  config.train.eval_every_epochs = 5
  config.train.log_every = 100
  config.train.checkpoint_every = 2000
  config.parallel.num_devices = 0
  return config
