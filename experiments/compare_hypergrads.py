"""Exact vs hvp vs finite-difference vs first-order hypergradients (see lease_jax/compare.py).

  python experiments/compare_hypergrads.py --config=configs/compare_hypergrads.py \
      --workdir=experiments/results/compare_hypergrads
"""

from lease_jax import compare

if __name__ == '__main__':
  compare.main()
