"""`lease-report` on synthetic run directories: groups, means over finished seeds only, edge
frequencies, benchmark look-ups, the plots, and one line for bad input."""

import csv
import json

import pytest

from lease_jax import report, report_cli

SKIPS = '|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|none~1|none~2|'
CONVS = '|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|none~2|'


def _run(root, name, *, mode, gamma, seed, arches, finished=True, base='darts', acc=0.5):
  path = root / name
  path.mkdir()
  config = {'seed': seed, 'space': 'nb201', 'data': {'name': 'cifar10'},
            'search': {'mode': mode, 'gamma': gamma}, 'explainer': {'base': base}}
  (path / 'config.json').write_text(json.dumps(config))
  history = [{'epoch': e + 1, 'step': 10 * (e + 1), 'genotype': {'space': 'nb201', 'arch': a},
              'metrics': {'explainer_val_acc': acc + 0.1 * e, 'alpha_grad_norm': 0.1}}
             for e, a in enumerate(arches)]
  (path / 'history.jsonl').write_text(''.join(json.dumps(h) + '\n' for h in history))
  if finished is not None:
    (path / 'summary.json').write_text(json.dumps({
        'finished': finished, 'genotype': history[-1]['genotype'],
        'final_explainer_val_acc': history[-1]['metrics']['explainer_val_acc'],
        'final_audience_val_acc': None, 'search_time_s': 100.0 * seed}))
  return str(path)


def test_report_groups_runs_and_averages_finished_seeds_only(tmp_path):
  runs = tmp_path / 'runs'
  runs.mkdir()
  (runs / 'd2_s1.log').write_text('a log beside the runs, matched by the pattern')
  _run(runs, 'd2_s1', mode='finite_difference', gamma=0.0, seed=1, arches=[CONVS, SKIPS])
  _run(runs, 'd2_s2', mode='finite_difference', gamma=0.0, seed=2, arches=[CONVS, CONVS],
       acc=0.3)
  _run(runs, 'd2_s3', mode='finite_difference', gamma=0.0, seed=3, arches=[SKIPS],
       finished=False)
  _run(runs, 'l_s1', mode='hvp', gamma=1.0, seed=1, arches=[CONVS, CONVS], base='pc_darts')
  table = tmp_path / 'table.csv'
  table.write_text(f'arch,test_acc\n{SKIPS},54.3\n{CONVS},93.0\n')
  out = tmp_path / 'report'
  assert report_cli.main([str(runs / '*'), '--out', str(out), '--benchmark', str(table)]) == 0
  rows = {r['group']: r for r in csv.DictReader(open(out / 'report.csv'))}
  darts2 = rows['nb201 cifar10: DARTS second order (finite_difference)']
  assert darts2['seeds'] == '1 2' and darts2['finished'] == '2' and darts2['unfinished'] == '1'
  # final accuracies 0.6 and 0.4: mean 0.5, std (ddof 1) 0.1414; the unfinished seed left out
  assert float(darts2['final_explainer_val_acc_mean']) == pytest.approx(0.5)
  assert float(darts2['final_explainer_val_acc_std']) == pytest.approx(0.141421, rel=1e-4)
  assert float(darts2['benchmark_test_acc_mean']) == pytest.approx((54.3 + 93.0) / 2)
  assert float(darts2['skip_connect_share_mean']) == pytest.approx((4 / 6 + 1 / 6) / 2)
  assert 'nb201 cifar10: PC-DARTS base LeaSE (hvp)' in rows
  edges = list(csv.DictReader(open(out / 'edges.csv')))
  first = [e for e in edges if e['group'].endswith('(finite_difference)') and e['edge'] == '0->1']
  assert {(e['operation'], e['seeds'], e['of']) for e in first} == {
      ('skip_connect', '1', '2'), ('nor_conv_3x3', '1', '2')}
  text = (out / 'report.md').read_text()
  assert '## Unfinished (not averaged)' in text and 'd2_s3' in text
  # Every run on its own row: the finished ones' final cells, the unfinished one's latest epoch.
  per_run = {r['run'].split('/')[-1]: r for r in csv.DictReader(open(out / 'runs.csv'))}
  assert sorted(per_run) == ['d2_s1', 'd2_s2', 'd2_s3', 'l_s1']
  assert (per_run['d2_s1']['status'], per_run['d2_s1']['cell'], per_run['d2_s1']['seed'],
          per_run['d2_s1']['benchmark_test_acc'], per_run['d2_s1']['explainer_val_acc'],
          per_run['d2_s1']['search_time_s']) == ('finished', SKIPS, '1', '54.3', '0.6000',
                                                 '100.0')
  assert float(per_run['d2_s1']['skip_connect_share']) == pytest.approx(4 / 6, rel=1e-3)
  assert (per_run['d2_s3']['status'], per_run['d2_s3']['cell'], per_run['d2_s3']['step']) == (
      'unfinished', SKIPS, '10')
  assert per_run['l_s1']['benchmark_test_acc'] == '93'
  assert '`' + SKIPS.replace('|', '\\|') + '`' in text  # a pipe inside a markdown table
  for name in ('accuracy.png', 'grad_norm.png', 'skip_connect_share.png'):
    assert (out / 'plots' / name).stat().st_size > 0


def test_epoch_band_is_the_mean_and_std_over_seeds(tmp_path):
  paths = [_run(tmp_path, f's{k}', mode='hvp', gamma=1.0, seed=k, arches=[CONVS, SKIPS],
                acc=0.2 * k) for k in (1, 2)]
  runs = [report.read_run(p) for p in paths]
  epochs, mean, std = report.epoch_band(runs, lambda e: e['metrics']['explainer_val_acc'])
  assert list(epochs) == [1, 2]
  assert mean == pytest.approx([0.3, 0.4]) and std == pytest.approx([0.141421, 0.141421],
                                                                      rel=1e-4)


def test_bad_input_is_one_line(tmp_path, capsys):
  assert report_cli.main([str(tmp_path / 'nothing*'), '--out', str(tmp_path / 'o')]) == 2
  assert 'matches no run directory' in capsys.readouterr().err
  (tmp_path / 'empty').mkdir()
  assert report_cli.main([str(tmp_path / 'empty'), '--out', str(tmp_path / 'o')]) == 2
  assert 'has no config.json' in capsys.readouterr().err


def test_a_darts_cell_is_one_line_of_kept_edges_per_cell_type():
  cell = {'normal': [['sep_conv_3x3', 0], ['skip_connect', 1]],
          'reduce': [['max_pool_3x3', 0], ['dil_conv_5x5', 2]]}
  assert report.cell_text(cell) == ('normal: sep_conv_3x3<-0 skip_connect<-1; '
                                    'reduce: max_pool_3x3<-0 dil_conv_5x5<-2')
  assert report.cell_text({'arch': SKIPS}) == SKIPS
