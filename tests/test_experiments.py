"""The study scripts' own arithmetic (experiments/): what their results tables are computed from."""

import csv
import importlib.util
import json
import os
import subprocess

import numpy as np
import pytest

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'experiments')


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(EXPERIMENTS, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


mode_searches = _load('mode_searches')

NORMAL = [['sep_conv_3x3', 0], ['skip_connect', 1], ['max_pool_3x3', 0], ['sep_conv_5x5', 2],
          ['dil_conv_3x3', 1], ['sep_conv_3x3', 3], ['skip_connect', 0], ['avg_pool_3x3', 4]]


def _entry(epoch, normal, reduce, alpha):
  return {'epoch': epoch, 'step': 10 * epoch, 'genotype': {'normal': normal, 'reduce': reduce},
          'alphas': {'alphas_normal': [[alpha, 0.0]], 'alphas_reduce': [[0.0, 2 * alpha]]},
          'metrics': {'explainer_val_acc': 0.5}}


def test_differing_edges_counts_each_choice_the_reference_does_not_make():
  other = [list(e) for e in NORMAL]
  other[1] = ['sep_conv_3x3', 1]          # node 0: same input, other operation
  other[6], other[7] = NORMAL[7], NORMAL[6]  # node 3: the same two choices, listed swapped
  other[4] = ['dil_conv_3x3', 0]          # node 2: same operation, other input
  genotype, reference = {'normal': other, 'reduce': NORMAL}, {'normal': NORMAL, 'reduce': NORMAL}
  assert mode_searches.differing_edges(genotype, reference) == [
      'normal node 0: sep_conv_3x3<-1', 'normal node 2: dil_conv_3x3<-0']
  assert mode_searches.differing_edges(reference, reference) == []


def test_plan_pairs_each_mode_with_the_hvp_search_of_its_seed():
  plan = {name: (mode, seed, reference)
          for name, mode, seed, reference in mode_searches.plan_searches([1, 2], [3, 2])}
  assert plan == {
      'hvp': ('hvp', 1, 'hvp'), 'finite_difference': ('finite_difference', 1, 'hvp'),
      'first_order': ('first_order', 1, 'hvp'), 'hvp_seed2': ('hvp', 2, 'hvp'),
      'finite_difference_seed2': ('finite_difference', 2, 'hvp_seed2'),
      'first_order_seed2': ('first_order', 2, 'hvp_seed2'), 'hvp_seed3': ('hvp', 3, 'hvp')}


def test_plan_pairs_a_multistep_setting_with_the_one_step_search_of_its_seed():
  plan = mode_searches.plan_searches([2], [], ('hvp', 'unroll_2'))
  assert plan == [('hvp', 'hvp', 2, 'hvp'), ('unroll_2', 'unroll_2', 2, 'hvp')]
  with pytest.raises(ValueError, match='hvp'):
    mode_searches.plan_searches([1], [], ('unroll_2',))


def test_search_flags_name_the_mode_the_unrolled_steps_and_the_solver():
  from lease_jax import errors
  assert mode_searches.search_flags('first_order') == ['--config.search.mode=first_order']
  assert mode_searches.search_flags('unroll_2') == [
      '--config.search.mode=hvp', '--config.hypergrad.explainer_steps=2',
      '--config.hypergrad.explanation_steps=2', '--config.hypergrad.audience_steps=2']
  assert mode_searches.search_flags('unroll_1_3_1') == [
      '--config.search.mode=hvp', '--config.hypergrad.explanation_steps=3']
  assert mode_searches.search_flags('neumann_5') == [
      '--config.search.mode=implicit', '--config.hypergrad.implicit_solver=neumann',
      '--config.hypergrad.implicit_iterations=5']
  for bad in ('unroll_0', 'darts2_unroll_2', 'official_sign', 'fd_0.01', 'exactly'):
    with pytest.raises(errors.UserError, match=f"--settings: '{bad}'; accepted: hvp"):
      mode_searches.search_flags(bad)


def test_compare_histories_measures_every_search_against_its_reference():
  changed = [list(e) for e in NORMAL]
  changed[0] = ['max_pool_3x3', 0]
  histories = {
      'hvp': [_entry(1, NORMAL, NORMAL, 1.0), _entry(2, NORMAL, NORMAL, 2.0)],
      'hvp_seed2': [_entry(1, changed, NORMAL, 4.0), _entry(2, NORMAL, changed, 2.0)],
      'first_order_seed2': [_entry(1, changed, NORMAL, 4.0), _entry(2, NORMAL, NORMAL, 2.0)],
  }
  references = {'hvp': 'hvp', 'hvp_seed2': 'hvp', 'first_order_seed2': 'hvp_seed2'}
  rows = {(r['search'], r['epoch']): r
          for r in mode_searches.compare_histories(histories, references)}
  assert rows['hvp', 1]['edges_differing'] == 0 and rows['hvp', 2]['alpha_distance'] == 0
  assert rows['hvp_seed2', 1]['edges_differing'] == 1
  assert rows['hvp_seed2', 1]['differences'] == 'normal node 0: max_pool_3x3<-0'
  # α = (a, 0, 0, 2a) against (1, 0, 0, 2): distance 3·√5 at epoch 1, none at epoch 2.
  assert rows['hvp_seed2', 1]['alpha_distance'] == pytest.approx(3 * np.sqrt(5))
  assert rows['hvp_seed2', 1]['alpha_norm_reference'] == pytest.approx(np.sqrt(5))
  assert rows['hvp_seed2', 2]['alpha_distance'] == 0
  assert rows['hvp_seed2', 1]['alpha_cosine'] == pytest.approx(1.0)  # α's differ in scale only
  assert rows['hvp_seed2', 2]['differences'] == 'reduce node 0: max_pool_3x3<-0'
  # Against its own seed's hvp search, not seed 1's.
  assert rows['first_order_seed2', 1]['reference'] == 'hvp_seed2'
  assert rows['first_order_seed2', 1]['edges_differing'] == 0
  assert rows['first_order_seed2', 1]['alpha_distance'] == 0
  assert rows['first_order_seed2', 2]['edges_differing'] == 1


nb201_round2 = _load('nb201_round2')
SKIPPY = '|skip_connect~0|+|skip_connect~0|none~1|+|skip_connect~0|skip_connect~1|none~2|'
CONVY = '|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|none~2|'


def test_ladder_reads_skip_edges_per_epoch_and_applies_its_rule():
  assert nb201_round2.skip_edges(SKIPPY) == 4 and nb201_round2.skip_edges(CONVY) == 1
  summary = {'arch': SKIPPY, 'step': 156, 'search_time_s': 12.34,
             'final_metrics': {'explainer_val_acc': 0.41234}}
  history = [{'genotype': {'space': 'nb201', 'arch': a}} for a in (CONVY, SKIPPY)]
  row = nb201_round2.run_row('r2', 'darts_2nd', 1, summary, history)
  assert row['skip_edges'] == 4 and row['skip_edges_per_epoch'] == '1 4'
  rows = [row, dict(row, seed=2, skip_edges=1), dict(row, seed=3, skip_edges=3)]
  assert not nb201_round2.collapsed(rows, 'r2')          # one seed of three
  rows[2]['skip_edges'] = 5
  assert nb201_round2.collapsed(rows, 'r2')              # two of three
  assert not nb201_round2.collapsed(rows, 'r3')          # another rung's rows do not count
  rows = [dict(r, method='darts_1st') for r in rows]
  assert not nb201_round2.collapsed(rows, 'r2')          # the rule reads DARTS-2nd only


def _finished_run(path, seed, arch, audience):
  path.mkdir(parents=True)
  config = {'seed': seed, 'space': 'nb201', 'data': {'name': 'cifar10'},
            'search': {'mode': 'hvp', 'gamma': 1.0}, 'explainer': {'base': 'darts'}}
  (path / 'config.json').write_text(json.dumps(config))
  entry = {'epoch': 1, 'step': 78, 'genotype': {'space': 'nb201', 'arch': arch},
           'metrics': {'explainer_val_acc': 0.4, 'alpha_grad_norm': 0.1}}
  (path / 'history.jsonl').write_text(json.dumps(entry) + '\n')
  (path / 'summary.json').write_text(json.dumps({
      'finished': True, 'arch': arch, 'genotype': entry['genotype'], 'step': 78,
      'search_time_s': 61.26, 'final_explainer_val_acc': 0.41234,
      'final_audience_val_acc': audience}))


def test_study_runs_seed_by_seed_and_writes_runs_csv_with_its_base(tmp_path):
  runs = nb201_round2.study_runs()
  # Five seeds for DARTS-2nd and both LeaSE modes, three for the rest; every method's seed k
  # before any method's seed k + 1.
  assert sorted(runs) == sorted((m, s) for m, n in nb201_round2.STUDY_SEEDS.items()
                                for s in range(1, n + 1))
  assert [s for _, s in runs] == sorted(s for _, s in runs)
  assert {m: n for m, n in nb201_round2.STUDY_SEEDS.items() if n >= 5} == {
      'darts_2nd': 5, 'lease_hvp': 5, 'lease_fd': 5}
  work, results = tmp_path / 'runs', tmp_path / 'results'
  results.mkdir()
  rung = nb201_round2.STUDY_RUNG
  _finished_run(work / f'{rung}_lease_hvp_seed1', 1, SKIPPY, 0.3)
  _finished_run(work / f'{rung}_pcdarts_seed2', 2, CONVY, None)
  (work / f'{rung}_darts_2nd_seed1').mkdir()               # started, nothing written yet
  assert nb201_round2.write_study(str(work), str(results)) == 2
  rows = list(csv.DictReader(open(results / 'runs.csv')))
  assert [(r['method'], r['base'], r['seed'], r['skip_edges'], r['audience_val_acc'])
          for r in rows] == [('lease_hvp', 'darts', '1', '4', '0.3'),
                             ('pcdarts', 'pc_darts', '2', '1', '')]
  assert (results / 'histories' / f'{rung}_pcdarts_seed2.jsonl').exists()
  assert (results / 'report' / 'report.md').exists()


def test_the_committed_study_records_agree_with_runs_csv():
  # What the maintainers look up (runs.csv's arch strings) must be valid NB201 cells, and each
  # run's kept record (what a resume on a fresh machine skips by) must say the same cell, step
  # and accuracy, with the history's last epoch ending on that cell.
  from lease_jax import search_space
  study = os.path.join(EXPERIMENTS, 'results', 'nb201_round2', 'study')
  rows = list(csv.DictReader(open(os.path.join(study, 'runs.csv'))))
  assert rows and {r['method'] for r in rows} <= set(nb201_round2.STUDY_METHODS)
  for row in rows:
    name = f'{nb201_round2.STUDY_RUNG}_{row["method"]}_seed{row["seed"]}'
    arch = search_space.Nb201Arch.from_string(row['arch'])
    assert arch.to_string() == row['arch'], name
    assert int(row['skip_edges']) == nb201_round2.skip_edges(row['arch'])
    assert row['base'] == nb201_round2.STUDY_METHODS[row['method']][2]
    kept = os.path.join(study, 'finished', name)
    with open(os.path.join(kept, 'summary.json')) as f:
      summary = json.load(f)
    assert summary['finished'] and summary['arch'] == row['arch'], name
    assert summary['step'] == int(row['steps'])
    assert round(summary['final_explainer_val_acc'], 4) == float(row['explainer_val_acc'])
    with open(os.path.join(kept, 'history.jsonl')) as f:
      history = [json.loads(line) for line in f if line.strip()]
    assert history[-1]['genotype']['arch'] == row['arch'] and history[-1]['step'] == summary['step']
    with open(os.path.join(study, 'histories', f'{name}.jsonl')) as f:
      assert [json.loads(line) for line in f if line.strip()] == history, name


audience_study = _load('audience_study')


def test_audience_study_seeds_table_is_mean_and_standard_error_of_paired_gaps(tmp_path):
  rows = tmp_path / 'rows'
  rows.mkdir()
  def write(setting, seed, audience, shuffled=None):
    row = {'dataset': 'cifar10', 'setting': setting, 'seed': seed, 'audience_val_acc': audience}
    if shuffled is not None:
      row['shuffled_val_acc'] = shuffled
    (rows / audience_study.row_name('cifar10', setting, seed)).write_text(json.dumps(row))
  # the first study's row (seed 0, its old file name, no seed field) and two new seeds
  (rows / 'cifar10__paper_literal.json').write_text(json.dumps(
      {'dataset': 'cifar10', 'setting': 'paper_literal', 'audience_val_acc': 0.15,
       'shuffled_val_acc': 0.17}))
  write('paper_literal', 1, 0.20, 0.16)
  write('paper_literal', 2, 0.25, 0.18)
  write('control_clean', 1, 0.33)
  write('control_clean', 2, 0.35)
  write('official_code', 1, 0.19, 0.18)                    # one seed: not in the seeds' table
  assert audience_study.row_name('cifar10', 'paper_literal', 0) == 'cifar10__paper_literal.json'
  audience_study.report(str(tmp_path))
  table = {r['setting']: r for r in csv.DictReader(open(tmp_path / 'audience_seeds.csv'))}
  assert set(table) == {'paper_literal', 'control_clean'}
  paper = table['paper_literal']
  gaps = np.array([0.15 - 0.17, 0.20 - 0.16, 0.25 - 0.18])
  assert paper['seeds'] == '0 1 2'
  assert float(paper['gap']) == pytest.approx(gaps.mean())
  assert float(paper['gap_se']) == pytest.approx(gaps.std(ddof=1) / np.sqrt(3))
  assert float(paper['audience_val_acc']) == pytest.approx(0.2)
  assert table['control_clean']['gap'] == ''                # no shuffled control
  assert 'paper_literal | 0 1 2 | 0.200 ± 0.029' in (tmp_path / 'audience_seeds.md').read_text()
  assert audience_study.main(['--workdir', str(tmp_path), '--seeds=a,1']) == 2


def test_vs_pytorch_table_pairs_each_seed_and_epoch_of_both_sides(tmp_path):
  vs_pytorch = _load('vs_pytorch_table')
  for seed, (ours, theirs) in {1: (0.30, 0.40), 2: (0.34, 0.36), 3: (0.5, None)}.items():
    (tmp_path / f'ours_seed{seed}').mkdir()
    (tmp_path / f'ours_seed{seed}' / 'history.jsonl').write_text(json.dumps(
        {'epoch': 1, 'step': 521, 'train': {'learning_rate': 0.025, 'train_loss': 1.5,
                                            'train_loss_with_aux': 1.6, 'train_acc': 0.4},
         'test': {'test_acc': ours}}) + '\n')
    if theirs is not None:  # seed 3: train.py's side not run, so not in the table
      (tmp_path / f'pytorch_seed{seed}.json').write_text(json.dumps({'history': [
          {'epoch': 1, 'learning_rate': 0.025, 'train_loss': 1.7, 'train_acc': 0.41,
           'test_acc': theirs}]}))
  runs = vs_pytorch.read_runs(str(tmp_path))
  assert sorted(runs) == [1, 2]
  assert runs[1]['ours'][0]['train_loss'] == 1.6  # train.py's objective: with the aux share
  text = vs_pytorch.table(runs)
  assert '| 1 | 1 | 0.0250 / 0.0250 | 1.6000 / 1.7000 | 0.4000 / 0.4100 | 0.3000 / 0.4000 |' in text
  # Mean gap (-0.10 - 0.02) / 2 = -0.06, std over the two seeds 0.0566.
  assert '| 1 | 2 | 0.3200 | 0.3800 | -0.0600 ± 0.0566 |' in text


def test_keep_records_copies_finished_runs_and_mirrors_the_latest_checkpoint(tmp_path):
  # A lost machine loses the study's workdir (outside the repository): what the drivers need to
  # skip a finished run, and an unfinished run's newest checkpoint, must be in RESULTS.
  workdir, results = tmp_path / 'runs', tmp_path / 'results'
  done, running = workdir / 'r2_darts_2nd_seed1', workdir / 'r2_lease_hvp_seed1'
  done.mkdir(parents=True)
  for name, text in (('summary.json', '{"finished": true}'), ('config.json', '{}'),
                     ('history.jsonl', '{"epoch": 1}\n'), ('events.out', 'x')):
    (done / name).write_text(text)
  for step in (40, 120, 80):
    (running / 'checkpoints' / str(step)).mkdir(parents=True)
    (running / 'checkpoints' / str(step) / 'state').write_text(str(step))
  (running / 'config.json').write_text('{}')
  (running / '.lock').write_text('pid')
  (running / 'summary.json').write_text('{"finished": false}')
  (workdir / 'not_a_run').mkdir()  # no config.json: not a search workdir, left alone
  (workdir / 'r2_pcdarts_seed1').mkdir()  # just started: config.json, no checkpoints/ yet
  (workdir / 'r2_pcdarts_seed1' / 'config.json').write_text('{}')
  script = os.path.join(EXPERIMENTS, 'keep_records.sh')
  result = subprocess.run(['bash', script, str(workdir), str(results), '0'], capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert 'r2_darts_2nd_seed1: finished' in result.stdout
  kept = results / 'finished' / 'r2_darts_2nd_seed1'
  assert sorted(p.name for p in kept.iterdir()) == ['config.json', 'history.jsonl', 'summary.json']
  assert (kept / 'history.jsonl').read_text() == '{"epoch": 1}\n'
  mirror = results / 'unfinished' / 'r2_lease_hvp_seed1'
  assert sorted(p.name for p in (mirror / 'checkpoints').iterdir()) == ['120']
  assert (mirror / 'checkpoints' / '120' / 'state').read_text() == '120'
  assert not (mirror / '.lock').exists() and (mirror / 'config.json').exists()
  assert sorted(p.name for p in results.iterdir()) == ['finished', 'unfinished']
  assert sorted(p.name for p in (results / 'unfinished').iterdir()) == ['r2_lease_hvp_seed1',
                                                                        'r2_pcdarts_seed1']
  assert not list((results / 'unfinished' / 'r2_pcdarts_seed1' / 'checkpoints').iterdir())
  # Once finished, the run moves from unfinished/ to finished/; a second pass copies nothing.
  (running / 'summary.json').write_text('{"finished": true}')
  (running / 'history.jsonl').write_text('{}\n')
  again = subprocess.run(['bash', script, str(workdir), str(results), '0'], capture_output=True,
                         text=True, timeout=60)
  assert again.returncode == 0 and 'r2_darts_2nd_seed1' not in again.stdout
  assert (results / 'finished' / 'r2_lease_hvp_seed1' / 'summary.json').exists()
  assert [p.name for p in (results / 'unfinished').iterdir()] == ['r2_pcdarts_seed1']
  missing = subprocess.run(['bash', script, str(tmp_path / 'nowhere'), str(results), '0'],
                           capture_output=True, text=True, timeout=60)
  assert missing.returncode == 2 and 'is not a folder' in missing.stderr
