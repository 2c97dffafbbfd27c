"""NAS-Bench-201: arch strings, derivation, the networks' parameter counts against the reference
code, the supernet's α gradient, benchmark-table look-ups, and the NB201 configs end to end."""

import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_helpers import CONFIG_DIR

from lease_jax import builders, data, lease, spaces
from lease_jax.configs import nb201_cifar10_darts_1st, nb201_cifar10_darts_2nd
from lease_jax.configs import nb201_cifar10_pcdarts
from lease_jax.configs import nb201_cifar100_darts_1st, nb201_cifar100_darts_2nd
from lease_jax.configs import nb201_cifar100_lease
from lease_jax.models import nb201
from lease_jax.search_space import NB201_EDGES, NB201_OPS, GenotypeError, Nb201Arch, derive_nb201

ALL_CONV3 = ('|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|'
             'nor_conv_3x3~2|')
ALL_SKIP = ('|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|'
            'skip_connect~2|')
MIXED = '|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|'


def test_every_arch_string_round_trips():
  seen = set()
  for ops in itertools.product(NB201_OPS, repeat=len(NB201_EDGES)):
    text = Nb201Arch(ops).to_string()
    assert Nb201Arch.from_string(text).ops == ops
    seen.add(text)
  assert len(seen) == 15_625
  assert Nb201Arch.from_string(MIXED).ops == (
      'nor_conv_1x1', 'none', 'avg_pool_3x3', 'skip_connect', 'nor_conv_3x3', 'none')


@pytest.mark.parametrize('text', [
    '|nor_conv_3x3~0|+|none~0|',                                            # two nodes
    '|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~3|',             # wrong source
    '|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|',                 # unknown op
    'nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|',               # no bars
    '|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|',                    # too few edges
])
def test_malformed_arch_strings_are_refused(text):
  with pytest.raises(GenotypeError, match='NB201'):
    Nb201Arch.from_string(text)


def test_derivation_is_the_argmax_per_edge_none_included():
  alphas = np.zeros((6, 5))
  choices = [0, 3, 1, 4, 2, 0]  # none wins two edges: it is kept, unlike DARTS
  for row, col in enumerate(choices):
    alphas[row, col] = 1.0
    alphas[row, (col + 1) % 5] = 0.5
  arch = derive_nb201(alphas)
  assert arch.ops == tuple(NB201_OPS[c] for c in choices)
  assert arch.to_string() == ('|none~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|'
                              'nor_conv_1x1~1|none~2|')
  with pytest.raises(GenotypeError, match='shape'):
    derive_nb201(np.zeros((14, 8)))


def _param_count(module, *args, **kwargs):
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
  return nb201.count_params(shapes['params'])


# Counted once with the reference code (AutoDL-Projects' `TinyNetwork` / `TinyNetworkDarts`,
# PyTorch, in a scratch environment): C = 16, N = 5, and C = 8, N = 2; 10 and 100 classes.
REFERENCE_COUNTS = [
    (ALL_CONV3, 16, 5, 10, 1_531_546), (ALL_SKIP, 16, 5, 10, 73_306),
    (MIXED, 16, 5, 10, 344_346), (ALL_CONV3, 8, 2, 10, 165_234), (ALL_SKIP, 8, 2, 10, 18_738),
    (MIXED, 8, 2, 10, 46_066), (ALL_CONV3, 16, 5, 100, 1_537_396), (MIXED, 16, 5, 100, 350_196),
]


@pytest.mark.parametrize('arch,channels,cells,classes,expected', REFERENCE_COUNTS)
def test_discrete_network_parameters_equal_the_reference(arch, channels, cells, classes,
                                                         expected):
  network = nb201.Network(Nb201Arch.from_string(arch), classes, channels, cells)
  assert _param_count(network, jnp.zeros((2, 32, 32, 3)), train=True) == expected


@pytest.mark.parametrize('channels,cells,classes,expected',
                         [(16, 5, 10, 1_692_826), (8, 2, 10, 181_362), (16, 5, 100, 1_698_676)])
def test_supernet_parameters_equal_the_reference(channels, cells, classes, expected):
  supernet = nb201.Supernet(classes, channels, cells)
  assert _param_count(supernet, nb201.init_alphas(jax.random.PRNGKey(1)),
                      jnp.zeros((2, 32, 32, 3))) == expected


def test_supernet_output_and_alpha_gradient_on_every_edge():
  supernet = nb201.Supernet(10, 4, 1, impl='xla')
  init, apply = nb201.make_explainer(supernet)
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 8, 8, 3))
  labels = jnp.arange(6) % 10
  params = init(jax.random.PRNGKey(1), x)
  alphas = nb201.init_alphas(jax.random.PRNGKey(2))

  def loss(a):
    logits = apply(params, a, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), labels]), logits

  (value, logits), grad = jax.value_and_grad(loss, has_aux=True)(alphas)
  assert logits.shape == (6, 10) and np.isfinite(float(value))
  per_edge = np.abs(np.asarray(grad['alphas'])).sum(axis=1)
  assert per_edge.shape == (6,) and np.all(per_edge > 0), per_edge


def _write_table(path, archs, extra_rows=()):
  lines = ['arch,test_acc,params']
  lines += [f'{a},{50 + k},{k / 10}' for k, a in enumerate(archs)]
  lines += list(extra_rows)
  path.write_text('\n'.join(lines) + '\n')
  return str(path)


def test_benchmark_table_reads_and_refuses_malformed_tables(tmp_path):
  every = [Nb201Arch(ops).to_string()
           for ops in itertools.product(NB201_OPS[:2], repeat=len(NB201_EDGES))]
  table = spaces.read_benchmark_table(_write_table(tmp_path / 'ok.csv', every))
  assert len(table) == 64 and table[every[3]] == {'test_acc': 53.0, 'params': 0.3}
  assert spaces.look_up(table, Nb201Arch.from_string(every[5])) == {'test_acc': 55.0,
                                                                     'params': 0.5}
  assert spaces.look_up(table, Nb201Arch.from_string(ALL_CONV3)) == {}  # not in the table
  assert spaces.look_up(None, Nb201Arch.from_string(ALL_CONV3)) is None
  bad = {
      'no_arch.csv': ('name,acc\nx,1\n', 'column "arch"'),
      'no_values.csv': (f'arch\n{ALL_SKIP}\n', 'no value column'),
      'bad_arch.csv': ('arch,acc\n|conv~0|+|x|,1\n', 'line 2'),
      'not_number.csv': (f'arch,acc\n{ALL_SKIP},high\n', "column 'acc' holds 'high'"),
      'twice.csv': (f'arch,acc\n{ALL_SKIP},1\n{ALL_SKIP},2\n', 'appears twice'),
  }
  for name, (text, message) in bad.items():
    (tmp_path / name).write_text(text)
    with pytest.raises(spaces.SpaceError, match=message):
      spaces.read_benchmark_table(str(tmp_path / name))
  with pytest.raises(spaces.SpaceError, match='no such file'):
    spaces.read_benchmark_table(str(tmp_path / 'missing.csv'))


TINY_NB201 = ('--config.data.source=packaged', '--config.data.name=digits',
              '--config.data.max_examples=48', '--config.search.batch_size=8',
              '--config.search.epochs=2', '--config.search.checkpoint_every=2',
              '--config.search.log_every=2', '--config.explainer.channels=4',
              '--config.explainer.layers=1', '--config.explainer.impl=xla',
              '--config.audience.width=4', '--config.audience.blocks_per_stage=1')


@pytest.fixture(scope='module')
def env(cli_env):
  return cli_env


def _search(workdir, *extra, env, config='nb201_cifar10_lease'):
  return subprocess.run(
      [sys.executable, '-m', 'lease_jax.main',
       f'--config={os.path.join(CONFIG_DIR, config + ".py")}', f'--workdir={workdir}',
       *TINY_NB201, *extra], env=env, capture_output=True, text=True, timeout=900)


def test_nb201_lease_pcdarts_config_searches_tiny_steps(tmp_path, env):
  """LeaSE on the PC-DARTS base in NB201, through `lease-search` (its own process: in the
  suite's worker, after the other NB201 tests, XLA:CPU crashed serialising one of this
  config's programs to the compilation cache; alone, and here, it does not)."""
  result = _search(tmp_path / 'run', '--config.search.max_steps=2', env=env,
                   config='nb201_cifar10_lease_pcdarts')
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert summary['step'] == 2 and summary['space'] == 'nb201'
  config = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert config['explainer']['base'] == 'pc_darts' and config['search']['gamma'] == 1.0


def test_nb201_lease_search_end_to_end_with_benchmark_look_ups(tmp_path, env):
  every = [Nb201Arch(ops).to_string()
           for ops in itertools.product(NB201_OPS, repeat=len(NB201_EDGES))]
  table = _write_table(tmp_path / 'table.csv', every)
  bad_table = _write_table(tmp_path / 'bad.csv', every[:3], ['|nope~0|,1,2'])
  refused = _search(tmp_path / 'refused', f'--config.benchmark.table={bad_table}', env=env)
  assert refused.returncode == 2
  assert refused.stderr.strip().splitlines()[-1].startswith('lease-search: error: benchmark')
  assert not (tmp_path / 'refused').exists()  # refused before anything is written

  workdir = tmp_path / 'run'
  result = _search(workdir, f'--config.benchmark.table={table}', env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  arch = Nb201Arch.from_string(summary['arch'])
  assert summary['space'] == 'nb201' and summary['genotype'] == arch.to_json_dict()
  assert json.loads((workdir / 'genotype.json').read_text())['arch'] == arch.to_string()
  alphas = np.asarray(json.loads((workdir / 'alphas.json').read_text())['alphas'])
  assert derive_nb201(alphas) == arch
  expected = spaces.read_benchmark_table(table)[arch.to_string()]
  assert summary['benchmark'] == expected
  history = [json.loads(line) for line in (workdir / 'history.jsonl').read_text().splitlines()]
  assert [h['epoch'] for h in history] == [1, 2]
  for entry in history:
    looked_up = spaces.read_benchmark_table(table)[entry['genotype']['arch']]
    assert entry['benchmark'] == looked_up
  assert 'benchmark/test_acc' in (workdir / 'log.txt').read_text()
  for name in ('cell.png', 'epoch002_cell.png', 'alphas.png', 'epoch001_explanations.png',
               'alphas_trajectory.png', 'history.png'):
    assert (workdir / 'plots' / name).exists(), name
  assert summary['final_audience_val_acc'] is not None


@pytest.mark.parametrize('module', [nb201_cifar10_darts_2nd, nb201_cifar10_darts_1st,
                                    nb201_cifar10_pcdarts],
                         ids=['darts_2nd', 'darts_1st', 'pcdarts'])
def test_nb201_baseline_configs_run_one_tiny_step(module):
  config = module.get_config()
  builders.check_config(config, 'search')
  config.explainer.update(dict(channels=4, layers=1, impl='xla'))
  config.audience.width = 4
  info = data.DatasetInfo('cifar10', 10, (8, 8, 3), (0.5,) * 3, (0.25,) * 3)
  search = builders.build_search(config, info, steps_per_epoch=3)
  assert search.space.name == 'nb201'
  assert search.spec.problem.has_audience == (config.search.gamma > 0)
  assert search.space.base == config.explainer.base
  state = search.init_state(0)
  rng = np.random.default_rng(0)
  batch = lambda: {'image': jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32),
                   'label': jnp.asarray(rng.integers(0, 10, 4))}
  new_state, metrics = lease.make_step(search.spec, False)(state, batch(), batch())
  assert int(new_state.step) == 1 and np.isfinite(float(metrics['alpha_grad_norm']))
  assert not np.allclose(new_state.alphas['alphas'], state.alphas['alphas'])


@pytest.mark.parametrize('module', [nb201_cifar100_lease, nb201_cifar100_darts_2nd,
                                    nb201_cifar100_darts_1st])
def test_nb201_cifar100_configs_build_a_100_class_search(module):
  config = module.get_config()
  builders.check_config(config)
  assert config.data.name == 'cifar100' and config.space == 'nb201'
  info = data.DatasetInfo('cifar100', 100, (32, 32, 3), (0.5,) * 3, (0.25,) * 3)
  search = builders.build_search(config, info, steps_per_epoch=3)
  shapes = jax.eval_shape(lambda: search.init_state(0))
  assert shapes.explainer['classifier']['kernel'].shape[-1] == 100
  assert shapes.alphas['alphas'].shape == (6, 5)
