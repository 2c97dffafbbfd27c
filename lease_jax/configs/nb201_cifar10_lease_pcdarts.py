"""LeaSE on the PC-DARTS base, NAS-Bench-201, CIFAR-10 (exact `hvp` hypergradient, γ = 1).

  lease-search --config=configs/nb201_cifar10_lease_pcdarts.py --workdir=runs/nb201_lease_pc

`nb201_cifar10_lease.py` (NB201's recipe, the default explanations, a ResNet-18 audience) with
the partial channel cell of `nb201_cifar10_pcdarts.py` (K = 4, no edge normalisation).
"""

from lease_jax.configs import nb201_cifar10_lease, nb201_cifar10_pcdarts


def get_config():
  return nb201_cifar10_pcdarts.use_partial_channels(nb201_cifar10_lease.get_config())
