"""LeaSE's explanations as the authors' official code computes them.

  lease-search --config=configs/lease_official_code.py --workdir=runs/official_code

The label target, a random start δ0 ~ U(-ε, ε), one *detached* sign step of ε (an FGSM step:
`explanation.step_size` counts sign steps in units of ε), projected onto the ε-box, and the
audience learning from δ' ⊙ x. Detaching the sign makes ∂δ'/∂E' = 0: the audience still trains
on the explanations, but its validation loss has no path back to the architecture, so the
audience term of ∇_A is exactly zero and A follows DARTS-2nd's objective.
"""

from lease_jax.configs import default


def get_config():
  config = default.get_config()
  config.explanation.update(dict(target='label', start='random', step_size=1.0, sign=True,
                                 clip=True, audience_input='product'))
  return config
