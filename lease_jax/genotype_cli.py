"""`lease-genotype`: derive, count and draw cells before spending GPU days on one.

  lease-genotype derive ALPHAS.json
  lease-genotype params GENOTYPE --network cifar|imagenet --channels C --layers L --num-classes K [--json]
  lease-genotype supernet --base darts|pc_darts [--partial-channels K] --channels C --layers L \
      --num-classes N [--json]
  lease-genotype draw GENOTYPE --out DIR

`derive` applies DARTS's rule, or PC-DARTS's when the file holds β (`betas_normal`,
`betas_reduce`, as a PC-DARTS search writes them). `supernet` counts the DARTS-space search
supernet's weights (A excluded), as the reference code's `model_search.Network` has them.

GENOTYPE is a registry name (`lease-genotype list`) or a genotype JSON file. Bad input gets one
line on stderr naming what is wrong, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from lease_jax import search_space, spaces


def _positive(value: str) -> int:
  try:
    n = int(value)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{value!r} is not an integer') from None
  if n < 1:
    raise argparse.ArgumentTypeError(f'{value} must be >= 1')
  return n


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='lease-genotype', description=__doc__.split('\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)
  derive = sub.add_parser('derive', help='print the genotype of an α file (DARTS rule)')
  derive.add_argument('alphas', help='JSON {"alphas_normal": [[8] x 14], "alphas_reduce": ...} '
                      '(with "betas_normal", "betas_reduce": PC-DARTS\'s rule)')
  supernet = sub.add_parser('supernet', help='count the search supernet\'s weights')
  supernet.add_argument('--base', choices=spaces.BASES, default='darts')
  supernet.add_argument('--partial-channels', type=_positive, default=4,
                        help='K of pc_darts (the operations run on C/K channels)')
  supernet.add_argument('--channels', type=_positive, default=16)
  supernet.add_argument('--layers', type=_positive, default=8)
  supernet.add_argument('--num-classes', type=_positive, default=10)
  supernet.add_argument('--json', action='store_true', help='print {"params": N}')
  params = sub.add_parser('params', help='count the evaluation network\'s parameters')
  params.add_argument('genotype', help='registry name or genotype JSON file')
  params.add_argument('--network', choices=('cifar', 'imagenet'), default='cifar')
  params.add_argument('--channels', type=_positive, default=36)
  params.add_argument('--layers', type=_positive, default=20)
  params.add_argument('--num-classes', type=_positive, default=10)
  params.add_argument('--json', action='store_true', help='print {"params": N, "params_no_aux": M}')
  draw = sub.add_parser('draw', help='draw the normal and reduction cells (PNG, SVG, DOT)')
  draw.add_argument('genotype', help='registry name or genotype JSON file')
  draw.add_argument('--out', required=True, help='output directory')
  sub.add_parser('list', help='list the registered genotypes')
  return parser


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    if args.command == 'derive':
      alphas = search_space.load_alphas(args.alphas)
      steps = search_space.steps_of(alphas['alphas_normal'])
      genotype = search_space.derive_genotype(alphas['alphas_normal'], alphas['alphas_reduce'],
                                              steps=steps, multiplier=steps,
                                              betas_normal=alphas.get('betas_normal'),
                                              betas_reduce=alphas.get('betas_reduce'))
      print(genotype.to_json())
    elif args.command == 'supernet':
      k = args.partial_channels
      if args.base == 'pc_darts' and args.channels % k:
        raise search_space.GenotypeError(f'--channels {args.channels} is not divisible by '
                                         f'--partial-channels {k}')
      from lease_jax.models import explainer
      count = explainer.count_supernet_params(args.channels, args.layers, args.num_classes,
                                              args.base, k)
      if args.json:
        print(json.dumps({'params': count}))
      else:
        print(f'search supernet ({args.base}{f", K={k}" if args.base == "pc_darts" else ""}, '
              f'C={args.channels}, layers={args.layers}, classes={args.num_classes}): '
              f'{count:,} weights (A excluded)')
    elif args.command == 'params':
      genotype = search_space.load_genotype(args.genotype)
      if args.channels % 2 and args.network == 'imagenet':
        raise search_space.GenotypeError(f'--channels {args.channels}: the ImageNet stem halves '
                                         f'C, so it must be even')
      from lease_jax.models import eval_network
      total, no_aux = eval_network.count_genotype_params(
          genotype, args.network, args.channels, args.layers, args.num_classes)
      if args.json:
        print(json.dumps({'params': total, 'params_no_aux': no_aux}))
      else:
        net = 'NetworkCIFAR' if args.network == 'cifar' else 'NetworkImageNet'
        print(f'{net}({args.genotype}, C={args.channels}, layers={args.layers}, '
              f'classes={args.num_classes}): {total:,} parameters; {no_aux:,} without the '
              f'auxiliary head ({no_aux / 1e6:.2f} M, the figure DARTS reports)')
    elif args.command == 'draw':
      genotype = search_space.load_genotype(args.genotype)
      from lease_jax import visualize
      for path in visualize.draw_genotype(genotype, args.out):
        print(path)
    elif args.command == 'list':
      for name, genotype in search_space.GENOTYPES.items():
        print(f'{name}: {genotype.to_json()}')
  except search_space.GenotypeError as e:
    print(f'lease-genotype: error: {e}', file=sys.stderr)
    return 2
  except OSError as e:
    print(f'lease-genotype: error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
