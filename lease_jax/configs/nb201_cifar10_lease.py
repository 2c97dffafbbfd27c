"""LeaSE on NAS-Bench-201, CIFAR-10, with NB201's search recipe; results are table look-ups.

  lease-search --config=configs/nb201_cifar10_lease.py --workdir=runs/nb201_lease \
      --config.data.data_dir=~/tensorflow_datasets --config.benchmark.table=nb201.csv
  # no TensorFlow, the JPEG archive of ../shared/data extracted to /data/cifar10-jpeg:
  lease-search --config=configs/nb201_cifar10_lease.py --workdir=runs/nb201_lease \
      --config.data.source=image_folder --config.data.data_dir=/data/cifar10-jpeg

The space (`space='nb201'`): NB201's supernet, C = 16 (`explainer.channels`), N = 5 cells per
stage (`explainer.layers`), one α [6, 5] shared by every cell. The recipe of the reference's
DARTS search on NB201 (AutoDL-Projects, `configs/nas-benchmark/algos/DARTS.config`): 50 epochs,
batch 64, SGD 0.025 cosine to 0.001, momentum 0.9, weight decay 5e-4, gradient clip 5; A by Adam
3e-4, betas (0.5, 0.999), weight decay 1e-3; the 25k/25k split of the training set. (The
reference's real weight step is Nesterov; its unrolled step, which this code differentiates
exactly, is plain momentum, as here.) The explanation setting and the audience (ResNet-18, width
64, γ = 1) are the library's defaults (`configs/default.py`).
`--config.benchmark.table=PATH` (a CSV: `arch` plus numeric columns) logs the looked-up values
of the derived cell every epoch.
"""

from lease_jax.configs import search_cifar10


def get_config():
  config = search_cifar10.get_config()
  config.space = 'nb201'
  config.explainer.channels = 16
  config.explainer.layers = 5       # N: cells per stage
  config.explainer.weight_decay = 5e-4
  config.audience.weight_decay = 5e-4
  return config
