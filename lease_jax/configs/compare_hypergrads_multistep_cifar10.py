"""How far is the one-step hypergradient from the converged one (issue 26)? CIFAR-10 (JPEG), the
comparison's small supernet (`compare_hypergrads_cifar10`), at 5 points of its hvp search.

  lease-compare-grads --config=configs/compare_hypergrads_multistep_cifar10.py \
      --workdir=runs/compare_multistep_cifar10 --config.data.data_dir=/tmp/cifar10-jpeg

The reference stands in for the hypergradient of the problem the paper writes down (Eq. 5,
each inner problem solved): the hypergradient through K = 40 unrolled steps at every level
(the explainer's SGD, the explanation's ascent, the audience's SGD, each repeated on the step's
train batch), the longest unroll measured; K = 20 beside it says how far it still moves. Against
it: today's one-step `hvp`, K = 2, 5, 10, 20 unrolls, the implicit hypergradient at the one-step
iterates by CG and by Neumann with 1, 5, 20 iterations (damping 1, Neumann scale 0.025: the
library's defaults), the paper's finite difference and first order.
"""

from lease_jax.configs import compare_hypergrads_cifar10


def get_config():
  config = compare_hypergrads_cifar10.get_config()
  # Cheap settings first, the longest unroll (the reference) last.
  config.compare.update(dict(points=5, every=20, timeout_s=3600, reference='unroll_40',
                             settings=(
      'hvp', 'first_order', 'fd_0.01', 'cg_1', 'cg_5', 'cg_20', 'neumann_1', 'neumann_5',
      'neumann_20', 'unroll_2', 'unroll_5', 'unroll_10', 'unroll_20', 'unroll_40')))
  return config
