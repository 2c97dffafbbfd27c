"""`lease-report`: tables, edge frequencies and seed-band plots over a set of search runs.

  lease-report runs/nb201_round2/*_seed* --out experiments/results/nb201_round2/report
  lease-report 'runs/seeds/seed_*' --out runs/seeds/report --benchmark nb201.csv --op skip_connect

Runs are grouped by space, dataset, base method, hypergradient mode and γ; unfinished runs are
listed, not averaged (`lease_jax/report.py`). Bad input is one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from lease_jax import errors


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='lease-report', description=__doc__.split('\n')[0])
  parser.add_argument('runs', nargs='+', help='run directories or glob patterns')
  parser.add_argument('--out', required=True, help='where the report goes')
  parser.add_argument('--benchmark', default='',
                      help='a benchmark table (CSV with an arch column) to look the cells up in')
  parser.add_argument('--op', default='skip_connect',
                      help='the operation whose share of the cell is plotted per epoch')
  args = parser.parse_args(argv)
  from lease_jax import report, spaces
  try:
    table = spaces.read_benchmark_table(args.benchmark) if args.benchmark else None
    result = report.write_report(report.expand(args.runs), args.out, table, args.op)
  except errors.UserError as e:
    print(f'lease-report: error: {e}', file=sys.stderr)
    return 2
  print(f'{len(result["groups"])} groups, {len(result["unfinished"])} unfinished runs: '
        f'{args.out}/report.md')
  return 0


if __name__ == '__main__':
  sys.exit(main())
