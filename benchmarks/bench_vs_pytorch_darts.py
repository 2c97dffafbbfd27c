"""Our search iterations as ratios to the official PyTorch DARTS code's, measured in one run.

  python benchmarks/bench_vs_pytorch_darts.py --darts_dir=/path/to/darts \
      --torch_python=/path/to/venv/bin/python --sizes=small,full --out=experiments/results/vs_pytorch

`--darts_dir` is a checkout of https://github.com/quark0/darts and `--torch_python` an interpreter
with PyTorch (the user's; neither is a dependency of this project). For each size, one after the
other on the same machine, each in its own process:

* PyTorch DARTS-1st and DARTS-2nd: `train_search.py`'s iteration (architect step, then the weights'
  step) from the unmodified `cnn/` code (`pytorch_darts_iteration.py`);
* ours: `bench_search_step.py` on the same sizes (the compile time, then the median iteration),
  with the persistent compilation cache off.

It prints and writes (`<out>/vs_pytorch_<size>.md` and `.json`, after every size) each of our
variants' median iteration as a ratio to PyTorch DARTS-2nd's and DARTS-1st's, with peak RSS. Run
it on a quiet machine: PyTorch's CPU threads slow down many times over when another process
competes for the cores, and the ratios are then meaningless. Random CIFAR-shaped data; the sizes
are `bench_search_step.py`'s (small: 5 cells, C=8, batch 16; full: 8 cells, C=16, batch 64).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {'small': (5, 8, 16), 'full': (8, 16, 64)}  # layers, channels, batch (bench_search_step)
OURS = ('darts_1st', 'darts_2nd_fd', 'darts_2nd_hvp', 'lease_hvp')


def pytorch_iteration(args, size: str, unrolled: bool) -> dict:
  """The official code's iteration at `size`, in its own process."""
  layers, channels, batch = SIZES[size]
  command = [args.torch_python, os.path.join(HERE, 'pytorch_darts_iteration.py'),
             f'--darts_dir={args.darts_dir}', f'--layers={layers}', f'--channels={channels}',
             f'--batch={batch}', f'--repeats={args.repeats}'] + (['--unrolled'] if unrolled else [])
  name = 'pytorch_darts_2nd' if unrolled else 'pytorch_darts_1st'
  try:
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
  except subprocess.TimeoutExpired:
    return {'variant': name, 'status': f'timeout after {args.timeout:.0f} s'}
  lines = [line for line in result.stdout.splitlines() if line.startswith('{')]
  if result.returncode != 0 or not lines:
    tail = result.stderr.strip().splitlines()[-1:] or ['(no output)']
    return {'variant': name, 'status': f'failed ({result.returncode}): {tail[0][:200]}'}
  return {'variant': name, 'status': 'ok', **json.loads(lines[-1])}


def our_iterations(args, size: str) -> tuple[str, float, list[dict]]:
  """`bench_search_step.py` at `size`: (its header, the matmul rate, one row per variant)."""
  with tempfile.TemporaryDirectory() as out:
    subprocess.run([sys.executable, os.path.join(HERE, 'bench_search_step.py'), f'--size={size}',
                    f'--variants={args.variants}', f'--repeats={args.repeats}',
                    f'--timeout={args.timeout}', f'--out={out}'], check=False)
    with open(os.path.join(out, f'bench_{size}.json')) as f:
      report = json.load(f)
  return report['header'], report['matmul_gflops'], report['rows']


def ratio_table(theirs: dict[str, dict], ours: list[dict]) -> str:
  """Markdown: every iteration's time, compile time, peak RSS and ratios to PyTorch's."""
  def median(row):
    return row['median_s'] if row.get('status') == 'ok' else None

  second, first = median(theirs['pytorch_darts_2nd']), median(theirs['pytorch_darts_1st'])
  head = ('| variant | compile (s) | median iteration (s) | peak RSS (GiB) | ÷ PyTorch DARTS-2nd '
          '| ÷ PyTorch DARTS-1st |')
  lines = [head, '|' + '---|' * (head.count('|') - 1)]
  for row in [*theirs.values(), *ours]:
    if row.get('status') != 'ok':
      lines.append(f'| {row["variant"]} | {row["status"]} | | | | |')
      continue
    compile_s = f'{row["compile_s"]:.1f}' if 'compile_s' in row else '—'
    ratio = lambda base: f'{row["median_s"] / base:.2f}×' if base else '—'
    lines.append(f'| {row["variant"]} | {compile_s} | {row["median_s"]:.2f} | '
                 f'{row["peak_rss_gib"]:.2f} | {ratio(second)} | {ratio(first)} |')
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--darts_dir', required=True, help='a checkout of quark0/darts')
  parser.add_argument('--torch_python', default=sys.executable,
                      help='a Python interpreter with PyTorch (default: this one)')
  parser.add_argument('--sizes', default='small,full', help='comma-separated: small, full')
  parser.add_argument('--variants', default=','.join(OURS),
                      help="ours, comma-separated (bench_search_step.py's names)")
  parser.add_argument('--repeats', type=int, default=2, help='timed iterations after the first')
  parser.add_argument('--timeout', type=float, default=1200, help='seconds per process')
  parser.add_argument('--out', default='', help='folder for vs_pytorch_<size>.md / .json')
  args = parser.parse_args(argv)
  sizes = [s for s in args.sizes.split(',') if s]
  if any(s not in SIZES for s in sizes):
    parser.error(f'--sizes={args.sizes}: accepted: {", ".join(SIZES)}')
  if not os.path.isfile(os.path.join(args.darts_dir, 'cnn', 'architect.py')):
    parser.error(f'--darts_dir={args.darts_dir}: no cnn/architect.py there; accepted: a checkout '
                 'of https://github.com/quark0/darts')
  failed = False
  for size in sizes:
    theirs = {}
    for unrolled in (True, False):
      row = pytorch_iteration(args, size, unrolled)
      theirs[row['variant']] = row
      print(json.dumps(row), flush=True)
    header, matmul, ours = our_iterations(args, size)
    table = ratio_table(theirs, ours)
    failed |= any(row.get('status') != 'ok' for row in [*theirs.values(), *ours])
    torch_row = next((r for r in theirs.values() if r.get('status') == 'ok'), {})
    text = (f'# Ours against the official PyTorch DARTS, {size}\n\n{header}; PyTorch '
            f'{torch_row.get("torch", "?")} with {torch_row.get("threads", "?")} threads\n\n'
            f'{table}\n\nCommand: `python benchmarks/bench_vs_pytorch_darts.py '
            f'{" ".join(argv if argv is not None else sys.argv[1:])}`\n')
    print(text, flush=True)
    if args.out:
      os.makedirs(args.out, exist_ok=True)
      with open(os.path.join(args.out, f'vs_pytorch_{size}.md'), 'w') as f:
        f.write(text)
      with open(os.path.join(args.out, f'vs_pytorch_{size}.json'), 'w') as f:
        json.dump({'header': header, 'matmul_gflops': matmul, 'pytorch': theirs, 'ours': ours},
                  f, indent=1)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
