"""The comparison of hypergradients (`lease-compare-grads`): settings and agreement measures."""

import numpy as np
import pytest

from lease_jax import cli_utils, hypergrad_study
from lease_jax.configs import compare_hypergrads


def test_settings_parse_with_their_references():
  fd = hypergrad_study.parse_setting('fd_0.01')
  assert (fd.mode, fd.radius, fd.darts2) == ('finite_difference', 0.01, False)
  assert fd.reference == ('exact', 'hvp')
  darts2 = hypergrad_study.parse_setting('darts2_fd_1e-3')
  assert (darts2.mode, darts2.radius, darts2.darts2) == ('finite_difference', 1e-3, True)
  assert darts2.reference == ('darts2_exact', 'darts2_hvp')
  official = hypergrad_study.parse_setting('official_sign')
  assert official.mode == 'hvp' and official.official_sign
  for bad in ('fd_', 'fd_-1', 'darts2_official_sign', 'hvp2'):
    with pytest.raises(cli_utils.UserError, match='accepted'):
      hypergrad_study.parse_setting(bad)


def test_multistep_and_implicit_settings_parse_into_their_config_fields():
  unroll = hypergrad_study.parse_setting('unroll_5')
  assert (unroll.mode, unroll.steps) == ('hvp', (5, 5, 5))
  mixed = hypergrad_study.parse_setting('darts2_unroll_2_3_4')
  assert (mixed.mode, mixed.steps, mixed.darts2) == ('hvp', (2, 3, 4), True)
  cg, neumann = (hypergrad_study.parse_setting(n) for n in ('cg_20', 'neumann_1'))
  assert (cg.mode, cg.solver, cg.iterations) == ('implicit', 'cg', 20)
  assert (neumann.solver, neumann.iterations) == ('neumann', 1)
  for bad in ('unroll_0', 'unroll_2_2', 'unroll_', 'unroll_x', 'cg_', 'cg_0', 'cg_1_2',
              'neumann_-1', 'lbfgs_5'):
    with pytest.raises(cli_utils.UserError, match='unroll_<K>'):
      hypergrad_study.parse_setting(bad)
  config = compare_hypergrads.get_config()
  fields = hypergrad_study.setting_config(config, mixed).hypergrad
  assert (fields.explainer_steps, fields.explanation_steps, fields.audience_steps) == (2, 3, 4)
  fields = hypergrad_study.setting_config(config, cg).hypergrad
  assert (fields.implicit_solver, fields.implicit_iterations) == ('cg', 20)
  assert config.hypergrad.explainer_steps == 1 and config.hypergrad.implicit_iterations == 10
  # a named reference comes first; the darts2_ settings take its darts2_ twin
  assert hypergrad_study.parse_setting('hvp').references('unroll_40') == (
      'unroll_40', 'exact', 'hvp')
  assert mixed.references('unroll_40')[0] == 'darts2_unroll_40'
  config.compare.settings, config.compare.reference = ('hvp', 'unroll_3'), 'unroll_40'
  with pytest.raises(cli_utils.UserError, match="compare.reference = 'unroll_40'; accepted"):
    hypergrad_study.check_compare_block(config)
  config.compare.reference = 'unroll_3'
  assert len(hypergrad_study.check_compare_block(config)) == 2


def test_a_named_reference_is_what_every_setting_is_compared_with():
  shapes = [[2, 3]]
  grads = lambda scale: {'grads': [{t: list(scale * np.arange(1.0, 7.0)) for t in
                                    hypergrad_study.TERMS}], 'alpha_shapes': shapes,
                         'compile_s': 0.0, 'run_s': 1.0, 'peak_rss_gib': 1.0}
  results = {'hvp': grads(1.0), 'unroll_4': grads(-1.0)}
  settings = [hypergrad_study.parse_setting(n) for n in ('hvp', 'unroll_4')]
  table = hypergrad_study.comparison_table(settings, results, [0], 'unroll_4')
  assert [(r['setting'], r['reference'], r['cos_total']) for r in table] == [
      ('hvp', 'unroll_4', pytest.approx(-1.0)), ('unroll_4', 'unroll_4', pytest.approx(1.0))]
  assert hypergrad_study.comparison_table(settings, results, [0])[0]['reference'] == 'hvp'


def test_setting_configs():
  config = compare_hypergrads.get_config()
  darts2 = hypergrad_study.setting_config(config, hypergrad_study.parse_setting('darts2_hvp'))
  assert darts2.search.gamma == 0 and config.search.gamma == 1
  official = hypergrad_study.setting_config(config,
                                            hypergrad_study.parse_setting('official_sign'))
  assert official.explanation.sign and official.explanation.target == 'label'
  assert not config.explanation.sign
  # the single-program exact setting alone takes `compare.exact_impl`'s kernels
  config.explainer.impl, config.compare.exact_impl = 'auto', 'xla'
  kernels_of = lambda name: hypergrad_study.setting_config(
      config, hypergrad_study.parse_setting(name)).explainer.impl
  assert [kernels_of(n) for n in ('exact', 'darts2_exact', 'hvp', 'fd_0.01')] == [
      'xla', 'xla', 'auto', 'auto']
  config.compare.exact_impl = ''
  assert kernels_of('exact') == 'auto'


def test_a_bad_compare_block_is_one_line_naming_what_is_accepted():
  config = compare_hypergrads.get_config()
  assert [s.name for s in hypergrad_study.check_compare_block(config)] == list(
      config.compare.settings)
  for key, value, message in (('exact_impl', 'cuda', "exact_impl = 'cuda'; accepted: ''"),
                              ('points', 0, 'points = 0, compare.every = 5; both must be >= 1'),
                              ('settings', ('hvp', 'fd_x'), "'fd_x'; accepted")):
    bad = config.copy_and_resolve_references()
    bad.compare[key] = value
    with pytest.raises(cli_utils.UserError, match=message.replace('(', r'\(')):
      hypergrad_study.check_compare_block(bad)


def test_agreement_measures():
  shapes = [[2, 3]]
  ref = np.array([-1.0, 0.5, 0.2, 0.3, -0.1, -2.0])
  same = hypergrad_study.agreement(2 * ref, ref, shapes)
  assert same['cos'] == pytest.approx(1) and same['relerr'] == pytest.approx(1)
  assert same['sign_agree'] == 1 and same['edge_agree'] == 1
  # the second edge's most favoured op moves from 2 to 1; two signs flip
  other = np.array([-1.0, 0.5, 0.2, 0.3, -3.0, 2.0])
  measured = hypergrad_study.agreement(other, ref, shapes)
  assert measured['edge_agree'] == 0.5 and measured['sign_agree'] == pytest.approx(5 / 6)
  zero = hypergrad_study.agreement(np.zeros(6), ref, shapes)
  assert np.isnan(zero['cos']) and np.isnan(zero['edge_agree']) and zero['relerr'] == 1


def test_an_interrupted_trajectory_resumes_from_its_latest_kept_state(tmp_path):
  import jax

  from lease_jax.configs import tiny
  config = tiny.get_config()
  config.search.mode = 'first_order'  # the trajectory's mode: the cheapest pieces
  config.compare = compare_hypergrads.get_config().compare
  config.compare.update(dict(points=3, every=1))
  assert hypergrad_study.run_trajectory(config, str(tmp_path)) == [0, 1, 2]
  uninterrupted = hypergrad_study.load_point(str(tmp_path), 2)
  (tmp_path / 'state_2.pkl').unlink()  # as if stopped after keeping step 1
  first = (tmp_path / 'state_1.pkl').stat().st_mtime_ns
  hypergrad_study.run_trajectory(config, str(tmp_path))
  resumed = hypergrad_study.load_point(str(tmp_path), 2)
  assert jax.tree.structure(resumed) == jax.tree.structure(uninterrupted)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed),
                                                  jax.tree.leaves(uninterrupted)))
  assert (tmp_path / 'state_1.pkl').stat().st_mtime_ns == first  # resumed from it, not redone


def test_a_settings_search_carries_its_unrolled_steps_and_implicit_solver():
  """What `measure_setting` computes with: the problem built from the setting's config."""
  from lease_jax.configs import tiny
  config = tiny.get_config()
  config.compare = compare_hypergrads.get_config().compare
  problem_of = lambda name: hypergrad_study.setup(hypergrad_study.setting_config(
      config, hypergrad_study.parse_setting(name)))[0].spec.problem
  mixed = problem_of('unroll_2_3_4')
  assert (mixed.explainer_steps, mixed.explanation_steps, mixed.audience_steps) == (2, 3, 4)
  implicit = problem_of('neumann_7').implicit
  assert (implicit.solver, implicit.iterations) == ('neumann', 7)
  assert problem_of('hvp').one_step and problem_of('darts2_unroll_3').gamma == 0
