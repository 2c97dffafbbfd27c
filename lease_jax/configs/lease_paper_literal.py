"""LeaSE's explanations exactly as the paper writes them (Eqs. 7-8, with the ascent sign).

  lease-search --config=configs/lease_paper_literal.py --workdir=runs/paper_literal

The soft target (the explainer's own prediction), a random start δ0 ~ U(-ε, ε), one raw-gradient
ascent step (ξ_Δ = 1), no projection, and the audience learning from δ' ⊙ x. Measured
(`experiments/results/audience_study/`): the ascent gradient at δ0 is O(ε), so δ' ≈ δ0 and the
audience sees the image times zero-mean noise; it stays near chance while its term dominates
∇_A. Kept so that the paper's setting can be reproduced and compared, not as a default.
"""

from lease_jax.configs import default


def get_config():
  config = default.get_config()
  config.explanation.update(dict(target='soft', start='random', step_size=1.0, sign=False,
                                 clip=False, audience_input='product'))
  return config
