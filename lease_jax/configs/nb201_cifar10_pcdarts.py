"""PC-DARTS on NAS-Bench-201, CIFAR-10 (first order, γ = 0; partial channels K = 4).

  lease-search --config=configs/nb201_cifar10_pcdarts.py --workdir=runs/nb201_pcdarts

NB201's search recipe (`nb201_cifar10_darts_1st.py`: 50 epochs, batch 64, SGD 0.025 cosine,
Adam 3e-4) with the partial channel cell of DrNAS's `201-space` (no edge normalisation, as
there; `--config.explainer.edge_normalization=True` adds β). PC-DARTS is reported on NB201
CIFAR-10 at 93.41 ± 0.30 % test.
"""

from lease_jax.configs import nb201_cifar10_darts_1st


def use_partial_channels(config):
  """The PC-DARTS base as DrNAS's NB201 cell: K = 4, no edge normalisation."""
  config.explainer.base = 'pc_darts'
  config.explainer.partial_channels = 4
  config.explainer.edge_normalization = False
  return config


def get_config():
  return use_partial_channels(nb201_cifar10_darts_1st.get_config())
