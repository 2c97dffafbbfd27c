"""The offline quick search: a real LeaSE search on scikit-learn's digits, on 2 CPU cores.

  lease-search --workdir=runs/default              # this config is the default
  lease-search --config=configs/default.py --workdir=runs/default --config.search.gamma=0.5

Every experiment config starts from this one and overrides fields; every field can be
overridden on the command line (`--config.<field>=<value>`).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 2
  config.space = 'darts'          # 'darts' | 'nb201' (NAS-Bench-201; configs/nb201_*.py)

  # Data. source: 'packaged' (digits, offline) | 'image_folder' | 'tfds'.
  config.data = ml_collections.ConfigDict(dict(
      source='packaged',
      name='digits',
      data_dir='',
      train_portion=0.5,        # DARTS: half of the training set searches, half validates
      max_examples=-1,          # use a class-balanced N of the training examples (-1: all)
      split_seed=0,             # seeds the class-stratified order behind the split and subsets
      augment='crop',           # 'none' | 'crop' | 'crop_flip' (digits are not flip-invariant)
      padding=1,                # random-crop padding (4 for CIFAR)
      workers=0,                # threads decoding a batch (image folders, ImageNet)
  ))

  # The search loop.
  config.search = ml_collections.ConfigDict(dict(
      mode='hvp',               # 'exact' | 'hvp' | 'finite_difference' | 'first_order' | 'implicit'
      gamma=1.0,                # weight of the audience's validation loss; 0 = DARTS
      epochs=8,
      warmup_epochs=0,          # the first epochs train the weights with A frozen (PC-DARTS: 15)
      batch_size=32,
      jit_whole_step=False,     # True: one program per iteration; False: jitted pieces
      log_every=10,             # steps between metric writes (and split hypergradient terms)
      checkpoint_every=50,      # steps between checkpoints (and at every epoch's end)
      keep_checkpoints=2,
      plot_every=1,             # epochs between the epoch plots (and the last); 0: none
      max_steps=-1,             # stop early after this many steps (-1: all epochs)
  ))

  # The explainer supernet and its optimizer (DARTS: SGD 0.025 cosine to 0.001, momentum 0.9,
  # weight decay 3e-4, clip 5). The base method (README "Base methods"): 'darts' mixes every
  # operation on all channels; 'pc_darts' (PC-DARTS) on the first C/partial_channels channels,
  # the rest bypassing, with edge normalisation β when `edge_normalization`.
  config.explainer = ml_collections.ConfigDict(dict(
      base='darts',             # 'darts' | 'pc_darts'
      partial_channels=4,       # pc_darts: K (4 in its CIFAR search, 2 in its ImageNet search)
      edge_normalization=True,  # pc_darts: β, a softmax over each node's incoming edges
      channels=8,
      layers=5,
      steps=4,
      multiplier=4,
      stem_multiplier=3,
      # kernels: 'auto' | 'slices' (fast on CPU) | 'xla' (fast compile) | 'smooth' (a study
      # option: 'auto' with GELU for ReLU and average for max pooling, explainer and audience)
      impl='auto',
      remat=True,
      learning_rate=0.025,
      learning_rate_min=0.001,
      momentum=0.9,
      weight_decay=3e-4,
      grad_clip=5.0,
  ))

  # The audience: ResNet-18 (CIFAR variant), `width` channels in its first stage (64 = ResNet-18).
  config.audience = ml_collections.ConfigDict(dict(
      width=16,
      blocks_per_stage=2,       # BasicBlocks a stage: 2 = ResNet-18 (the paper's), 1 = ResNet-10
      learning_rate=0.025,
      learning_rate_min=0.001,
      momentum=0.9,
      weight_decay=3e-4,
      grad_clip=5.0,
  ))

  # The architecture optimizer (DARTS: Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3).
  config.arch = ml_collections.ConfigDict(dict(
      learning_rate=3e-4,
      b1=0.5,
      b2=0.999,
      weight_decay=1e-3,
      init_scale=1e-3,          # A = init_scale · N(0, 1)
  ))

  # Explanations (Eq. 7) and how the audience learns from them (Eq. 8). The default is chosen by
  # a measured study (experiments/results/audience_study/, README "The explanations"): the label
  # target from δ0 = 0 makes δ' the explainer's input gradient itself (explanation share 1.0),
  # and the audience reweighs pixels by |δ'| / max|δ'| (scale-free, unsaturated). The paper's
  # literal setting is configs/lease_paper_literal.py, the official code's
  # configs/lease_official_code.py.
  config.explanation = ml_collections.ConfigDict(dict(
      epsilon_pixels=8 / 255,   # ε in pixel units; divided by each channel's std
      step_size=1.0,            # ξ_Δ: the raw-gradient ascent step on O_Δ (a sum over the
                                # batch); with `sign`, the step in units of ε
      target='label',           # 'soft' (paper) | 'label' (official code)
      start='zero',             # δ0: 'random' (U(-ε, ε), paper) | 'zero' (needs target 'label')
      clip=False,               # project δ' onto the ε-box
      sign=False,               # detached sign step (official code): no audience hypergradient
      # How the audience reweighs pixels by δ': 'product' (δ' ⊙ x, paper) | 'saliency'
      # (clip(|δ'|/ε, 0, 1) ⊙ x) | 'normalized_saliency' (|δ'|/max|δ'| ⊙ x, per example)
      audience_input='normalized_saliency',
  ))

  # NAS-Bench-201 look-ups: a CSV with a column `arch` (NB201 strings) and numeric columns;
  # every epoch logs the current cell's values (space 'nb201' only).
  config.benchmark = ml_collections.ConfigDict(dict(table=''))

  config.hypergrad = ml_collections.ConfigDict(dict(
      fd_radius=0.01,           # finite differences: r = fd_radius / ‖v‖ (DARTS)
      # How many steps each inner problem is unrolled in the hypergradient (the paper: 1):
      # the explainer's weights (Eq. 6), the explanation's ascent (Eq. 7, PGD-like; the real
      # step's explanation takes as many), the audience's weights (Eq. 8).
      explainer_steps=1,
      explanation_steps=1,
      audience_steps=1,
      # search.mode 'implicit': the implicit function theorem at the inner iterates, every
      # inverse-Hessian product by 'cg' or 'neumann' (`hypergrad.solve`) on H + damping·I.
      implicit_solver='cg',
      implicit_iterations=10,   # CG's iterations, or the Neumann series' terms
      implicit_damping=1.0,      # λ: the proximal weight; CG needs H + λ I positive definite
      implicit_scale=0.025,     # Neumann's α (the inner learning rate: one term = one step)
  ))

  # Architecture evaluation (`lease-train`): a genotype's network trained from scratch with
  # DARTS's recipe. Here a small network for the digits; eval_cifar10.py has the paper's.
  config.train = ml_collections.ConfigDict(dict(
      genotype='DARTS_V2',      # registry name or genotype JSON (overridden by --genotype)
      network='cifar',          # 'cifar' (NetworkCIFAR) | 'imagenet' (NetworkImageNet)
      channels=8,
      layers=5,
      auxiliary=False,          # the CIFAR auxiliary head needs 8x8 maps at 2/3 depth
      auxiliary_weight=0.4,
      drop_path_prob=0.2,       # ramped linearly over epochs
      cutout=0,                 # cutout length (16 for CIFAR)
      augment='crop',
      epochs=5,
      batch_size=32,
      keep_partial_batch=True,  # each epoch ends with its partial batch, as DARTS's train.py
      eval_batch_size=128,
      learning_rate=0.025,
      learning_rate_min=0.0,
      lr_schedule='cosine',     # 'cosine' (CIFAR) | 'exponential' (ImageNet: ×lr_decay per epoch)
      lr_decay=0.97,
      momentum=0.9,
      weight_decay=3e-4,
      grad_clip=5.0,
      label_smoothing=0.0,
      impl='auto',
      eval_every_epochs=1,
      test_examples=-1,         # evaluate on a class-balanced N of the test examples (-1: all)
      log_every=20,
      checkpoint_every=500,
      keep_checkpoints=2,
      max_steps=-1,
  ))

  # Devices: data parallelism over a 1-D mesh (see lease_jax/parallel.py).
  config.parallel = ml_collections.ConfigDict(dict(
      num_devices=1,            # 0: every device (of every process)
      batch_norm='global',      # 'global' | 'per_device' (statistics of each device's share)
  ))
  return config
