"""The official DARTS evaluation loop (`cnn/train.py`), on CPU, at a chosen size and schedule:
the reference that `lease-train`'s per-epoch accuracies are compared with (issue 27 item 7).

  python benchmarks/pytorch_darts_train.py --darts_dir=/path/to/darts \
      --data_dir=/tmp/cifar10-jpeg --layers=8 --channels=16 --epochs=3 --seed=1 \
      --schedule=lease_jax --out=experiments/results/vs_pytorch_train/pytorch_seed1.json

`cnn/model.py` (NetworkCIFAR), `cnn/genotypes.py` and `cnn/utils.py` (its CIFAR-10 transforms:
random crop with padding 4, horizontal flip, the CIFAR mean and std) are imported unmodified
from the checkout; `.cuda()` is a no-op and drop path's mask a CPU tensor (`cpu_only`). The loop
is `train.py`'s (its PyTorch 0.3 calls in today's form: `loss.item()`, `clip_grad_norm_`), with
its defaults (batch 96, SGD 0.025, momentum 0.9, weight
decay 3e-4, gradient clip 5, drop path 0.2 ramped by epoch / epochs, no auxiliary head, no
cutout, `DataLoader(shuffle=True, num_workers=2)` keeping each epoch's partial batch), except
that the data are the JPEG image folders (`torchvision.datasets.ImageFolder`: `train/` to train,
`test/` to report) instead of the pickled batches train.py downloads.

`--schedule`: `lease_jax` trains epoch e (0-based) at the cosine rate of e (the order of
DARTS's PyTorch 0.3 runs and of `lease-train`); `pytorch` steps `CosineAnnealingLR` at each
epoch's start as train.py does, which under PyTorch >= 1.1 trains epoch e at the rate of e + 1.
Writes one JSON file: per epoch the learning rate, the training loss (train.py's objective) and
accuracy, the test loss and accuracy, and seconds; the parameter count; torch's version and
threads.
"""

import argparse
import json
import math
import os
import sys
import time

from pytorch_darts_iteration import cpu_only, darts_cnn_dir

SCHEDULES = ('lease_jax', 'pytorch')


def epoch_rate(base: float, epoch: int, epochs: int, schedule: str) -> float:
  """`CosineAnnealingLR(epochs)` to 0 at epoch e (`lease_jax`) or e + 1 (`pytorch`)."""
  e = epoch if schedule == 'lease_jax' else epoch + 1
  return base * 0.5 * (1 + math.cos(math.pi * e / epochs))


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--darts_dir', required=True, help='a checkout of quark0/darts')
  parser.add_argument('--data_dir', required=True, help='the image folder root (train/, test/)')
  parser.add_argument('--layers', type=int, default=8)
  parser.add_argument('--channels', type=int, default=16)
  parser.add_argument('--epochs', type=int, default=3, help="the schedule's length")
  parser.add_argument('--train_epochs', type=int, default=None,
                      help='the epochs trained (default: --epochs): the first epochs of a longer '
                      'schedule, as a run of --epochs stopped there')
  parser.add_argument('--batch', type=int, default=96)
  parser.add_argument('--arch', default='DARTS_V2')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--schedule', choices=SCHEDULES, default='lease_jax')
  parser.add_argument('--out', required=True, help='the JSON file written')
  args = parser.parse_args()
  train_epochs = args.epochs if args.train_epochs is None else args.train_epochs
  if not 1 <= train_epochs <= args.epochs:
    parser.error(f'--train_epochs={train_epochs}; accepted: 1 to --epochs ({args.epochs})')
  cnn = darts_cnn_dir(args.darts_dir, 'model.py')
  for split in ('train', 'test'):
    if not os.path.isdir(os.path.join(args.data_dir, split)):
      parser.error(f'--data_dir={args.data_dir}: no {split}/ folder; accepted: an image folder '
                   'root holding train/ and test/ (one folder per class)')

  import numpy as np
  import torch
  import torchvision.datasets as dset
  cpu_only(torch)
  sys.path.insert(0, cnn)
  import genotypes  # pylint: disable=import-error
  import utils  # pylint: disable=import-error
  from model import NetworkCIFAR  # pylint: disable=import-error

  hyper = argparse.Namespace(learning_rate=0.025, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                             drop_path_prob=0.2, cutout=False, cutout_length=16)
  np.random.seed(args.seed)
  torch.manual_seed(args.seed)
  model = NetworkCIFAR(args.channels, 10, args.layers, False, getattr(genotypes, args.arch))
  criterion = torch.nn.CrossEntropyLoss()
  optimizer = torch.optim.SGD(model.parameters(), hyper.learning_rate, momentum=hyper.momentum,
                              weight_decay=hyper.weight_decay)
  train_transform, test_transform = utils._data_transforms_cifar10(hyper)  # pylint: disable=protected-access
  train_queue = torch.utils.data.DataLoader(
      dset.ImageFolder(os.path.join(args.data_dir, 'train'), train_transform),
      batch_size=args.batch, shuffle=True, num_workers=2)
  test_queue = torch.utils.data.DataLoader(
      dset.ImageFolder(os.path.join(args.data_dir, 'test'), test_transform),
      batch_size=args.batch, shuffle=False, num_workers=2)

  history = []  # a JSON line per epoch as it ends
  for epoch in range(train_epochs):
    start = time.perf_counter()
    rate = epoch_rate(hyper.learning_rate, epoch, args.epochs, args.schedule)
    for group in optimizer.param_groups:
      group['lr'] = rate
    model.drop_path_prob = hyper.drop_path_prob * epoch / args.epochs
    model.train()
    loss_sum = correct = count = 0.0
    for images, labels in train_queue:
      optimizer.zero_grad()
      logits, _ = model(images)
      loss = criterion(logits, labels)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), hyper.grad_clip)
      optimizer.step()
      loss_sum += loss.item() * len(labels)
      correct += (logits.argmax(1) == labels).sum().item()
      count += len(labels)
    train_loss, train_acc = loss_sum / count, correct / count
    model.eval()
    loss_sum = correct = count = 0.0
    with torch.no_grad():
      for images, labels in test_queue:
        logits, _ = model(images)
        loss_sum += criterion(logits, labels).item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        count += len(labels)
    history.append({'epoch': epoch + 1, 'learning_rate': rate, 'train_loss': train_loss,
                    'train_acc': train_acc, 'test_loss': loss_sum / count,
                    'test_acc': correct / count, 'seconds': time.perf_counter() - start})
    print(json.dumps(history[-1]), flush=True)

  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'arch': args.arch, 'layers': args.layers, 'channels': args.channels,
               'batch': args.batch, 'seed': args.seed, 'schedule': args.schedule,
               'epochs': args.epochs,
               'params': sum(p.numel() for p in model.parameters()),
               'torch': torch.__version__, 'threads': torch.get_num_threads(),
               'history': history}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
