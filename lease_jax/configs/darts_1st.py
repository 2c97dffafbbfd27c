"""DARTS first order from the same code: ∇_A L_val(E, A), no unrolling, no audience.

  lease-search --config=configs/darts_1st.py --workdir=runs/darts_1st
"""

from lease_jax.configs import darts_2nd


def get_config():
  config = darts_2nd.get_config()
  config.search.mode = 'first_order'
  return config
