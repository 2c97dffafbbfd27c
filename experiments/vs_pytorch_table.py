"""The table of `experiments/vs_pytorch_train.sh`'s runs: per seed and epoch, `lease-train`'s and
DARTS's `train.py`'s learning rate, training loss and accuracy, and test accuracy, side by side,
and per epoch the mean over seeds of each side's test accuracy and of their difference.

  python experiments/vs_pytorch_table.py runs/vs_pytorch_train \
      experiments/results/vs_pytorch_train/table.md
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

import numpy as np


def read_runs(out: str) -> dict[int, dict[str, list[dict]]]:
  """seed -> {'ours': epochs, 'pytorch': epochs}, each epoch a dict of the table's columns, for
  the seeds both sides have."""
  runs = {}
  for path in sorted(glob.glob(os.path.join(out, 'pytorch_seed*.json'))):
    seed = int(re.search(r'pytorch_seed(\d+)\.json$', path).group(1))
    history = os.path.join(out, f'ours_seed{seed}', 'history.jsonl')
    if not os.path.exists(history):
      continue
    with open(path) as f:
      theirs = json.load(f)['history']
    with open(history) as f:
      ours = [json.loads(line) for line in f if line.strip()]
    ours = [{'epoch': e['epoch'], 'learning_rate': e['train']['learning_rate'],
             'train_loss': e['train']['train_loss_with_aux'], 'train_acc': e['train']['train_acc'],
             'test_acc': e['test']['test_acc']} for e in ours if 'test' in e]
    runs[seed] = {'ours': ours, 'pytorch': theirs}
  return runs


def table(runs: dict[int, dict[str, list[dict]]]) -> str:
  lines = ['| seed | epoch | lr (ours / train.py) | train loss (ours / train.py) | '
           'train acc (ours / train.py) | test acc (ours / train.py) |', '|---|---|---|---|---|---|']
  by_epoch = {}
  for seed, sides in sorted(runs.items()):
    for ours, theirs in zip(sides['ours'], sides['pytorch']):
      assert ours['epoch'] == theirs['epoch'], (seed, ours['epoch'], theirs['epoch'])
      cells = [f'{ours[k]:.4f} / {theirs[k]:.4f}' for k in
               ('learning_rate', 'train_loss', 'train_acc', 'test_acc')]
      lines.append(f'| {seed} | {ours["epoch"]} | ' + ' | '.join(cells) + ' |')
      by_epoch.setdefault(ours['epoch'], []).append((ours['test_acc'], theirs['test_acc']))
  lines += ['', '| epoch | seeds | test acc, ours (mean) | train.py (mean) | ours − train.py '
            '(mean ± std over seeds) |', '|---|---|---|---|---|']
  for epoch, pairs in sorted(by_epoch.items()):
    ours, theirs = np.array(pairs).T
    gap = ours - theirs
    lines.append(f'| {epoch} | {len(pairs)} | {ours.mean():.4f} | {theirs.mean():.4f} | '
                 f'{gap.mean():+.4f} ± {gap.std(ddof=1) if len(gap) > 1 else 0:.4f} |')
  return '\n'.join(lines) + '\n'


def main() -> int:
  if len(sys.argv) != 3:
    print(__doc__, file=sys.stderr)
    return 2
  runs = read_runs(sys.argv[1])
  if not runs:
    print(f'{sys.argv[1]}: no seed with both pytorch_seed<k>.json and ours_seed<k>/history.jsonl',
          file=sys.stderr)
    return 2
  text = table(runs)
  os.makedirs(os.path.dirname(os.path.abspath(sys.argv[2])), exist_ok=True)
  with open(sys.argv[2], 'w') as f:
    f.write(text)
  print(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
