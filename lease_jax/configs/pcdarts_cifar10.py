"""PC-DARTS on CIFAR-10 with its reference recipe (Xu et al., ICLR 2020; an accelerator's job).

  lease-search --config=configs/pcdarts_cifar10.py --workdir=runs/pcdarts_cifar10 \
      --config.data.data_dir=~/tensorflow_datasets
  # no TensorFlow, the JPEG archive of ../shared/data extracted to /data/cifar10-jpeg:
  lease-search --config=configs/pcdarts_cifar10.py --workdir=runs/pcdarts_cifar10 \
      --config.data.source=image_folder --config.data.data_dir=/data/cifar10-jpeg

The reference's `train_search.py` (yuhuixu1993/PC-DARTS): the DARTS space, 8 cells, C = 16,
partial channels K = 4 with edge normalisation; batch 256; weights SGD 0.1 cosine to 0,
momentum 0.9, weight decay 3e-4, clip 5; A by Adam 6e-4, betas (0.5, 0.999), weight decay 1e-3;
50 epochs, the first 15 with A frozen; first order; γ = 0 (no audience). The 25k/25k split.
"""

from lease_jax.configs import darts_1st


def get_config():
  config = darts_1st.get_config()
  config.explainer.base = 'pc_darts'
  config.explainer.partial_channels = 4
  config.explainer.edge_normalization = True
  config.search.batch_size = 256
  config.search.warmup_epochs = 15
  config.explainer.learning_rate = 0.1
  config.explainer.learning_rate_min = 0.0
  config.arch.learning_rate = 6e-4
  return config
