"""One search iteration of the official PyTorch DARTS code, timed on CPU (run by
`bench_vs_pytorch_darts.py` under the interpreter that has PyTorch; not a dependency here).

  python benchmarks/pytorch_darts_iteration.py --darts_dir=/path/to/darts --layers=8 \
      --channels=16 --batch=64 --unrolled --repeats=2

The iteration is `train_search.py`'s loop body with its default hyperparameters: the architect's
step on a (train, val) pair of batches (`--unrolled`: DARTS-2nd, the one-step unrolled
hypergradient with its finite-difference Hessian-vector product; otherwise DARTS-1st), then the
weights' SGD step with gradient clipping. `cnn/model_search.py` and `cnn/architect.py` are
imported unmodified from the checkout; only `.cuda()` is made a no-op at run time, so the code
runs on the CPU. The data are random CIFAR-shaped batches. Prints one JSON line: the first
iteration's time, the median, min and max of `--repeats` more, and the process's peak RSS.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
import types


def cpu_only(torch) -> None:
  """`.cuda()` returns the object itself and `torch.cuda.FloatTensor` is the CPU tensor: the
  2018 code calls the first on every module and tensor, and makes drop path's mask with the
  second."""
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  torch.nn.Module.cuda = lambda self, *args, **kwargs: self
  torch.cuda.FloatTensor = torch.FloatTensor


def darts_cnn_dir(darts_dir: str, needed: str) -> str:
  """`<darts_dir>/cnn`, or exits 2 in one line where `needed` is not there."""
  cnn = os.path.join(darts_dir, 'cnn')
  if not os.path.isfile(os.path.join(cnn, needed)):
    print(f'--darts_dir={darts_dir}: no cnn/{needed} there; accepted: a checkout of '
          'https://github.com/quark0/darts', file=sys.stderr)
    sys.exit(2)
  return cnn


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--darts_dir', required=True, help='a checkout of quark0/darts')
  parser.add_argument('--layers', type=int, default=8)
  parser.add_argument('--channels', type=int, default=16)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--unrolled', action='store_true', help='DARTS-2nd (default: DARTS-1st)')
  parser.add_argument('--repeats', type=int, default=2)
  args = parser.parse_args()
  cnn = darts_cnn_dir(args.darts_dir, 'architect.py')

  import torch
  cpu_only(torch)
  sys.path.insert(0, cnn)
  from architect import Architect  # pylint: disable=import-error
  from model_search import Network  # pylint: disable=import-error

  # train_search.py's defaults.
  hyper = types.SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4,
                                arch_weight_decay=1e-3, learning_rate=0.025, grad_clip=5.0)
  torch.manual_seed(0)
  criterion = torch.nn.CrossEntropyLoss()
  model = Network(args.channels, 10, args.layers, criterion)
  optimizer = torch.optim.SGD(model.parameters(), hyper.learning_rate, momentum=hyper.momentum,
                              weight_decay=hyper.weight_decay)
  architect = Architect(model, hyper)
  batches = [(torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,)))
             for _ in range(4)]

  def iteration(k):
    (x, y), (x_val, y_val) = batches[(2 * k) % 4], batches[(2 * k + 1) % 4]
    model.train()
    architect.step(x, y, x_val, y_val, hyper.learning_rate, optimizer, unrolled=args.unrolled)
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), hyper.grad_clip)
    optimizer.step()

  def timed(k):
    start = time.perf_counter()
    iteration(k)
    return time.perf_counter() - start

  first = timed(0)
  times = [timed(k + 1) for k in range(args.repeats)]
  print(json.dumps({
      'first_s': first, 'median_s': statistics.median(times), 'min_s': min(times),
      'max_s': max(times), 'repeats': args.repeats, 'threads': torch.get_num_threads(),
      'torch': torch.__version__,
      'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
