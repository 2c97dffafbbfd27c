"""The smallest real search, for tests: digits, a one-cell supernet, a narrow ResNet-10.

  lease-search --config=configs/tiny.py --workdir=/tmp/tiny

Compile time dominates at this size (the programs are as large as at full size, the arrays tiny),
so the supernet has one cell (a reduction cell: both cell types' α exist, the normal one unused)
and XLA's own kernels, which compile fastest, and the audience one BasicBlock a stage (ResNet-10:
the same code as ResNet-18's; a tiny hvp step's programs compiled in 13.9 s against 18.3 s).
"""

from lease_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.max_examples = 48        # 3 search steps (or 6 training steps) per epoch
  config.search.epochs = 2
  config.search.batch_size = 8
  config.search.log_every = 2
  config.search.checkpoint_every = 2
  # Only the final α and cell drawings: the epoch plots cost a tiny run more than its steps (the
  # tests that look at them ask for them with plot_every=1).
  config.search.plot_every = 0
  config.explainer.channels = 4
  config.explainer.layers = 1
  config.explainer.impl = 'xla'
  config.audience.width = 4
  config.audience.blocks_per_stage = 1
  config.train.channels = 4
  config.train.layers = 2
  config.train.epochs = 1
  config.train.batch_size = 8
  config.train.eval_batch_size = 32
  config.train.test_examples = 40
  config.train.log_every = 2
  config.train.checkpoint_every = 2
  config.train.impl = 'xla'
  return config
