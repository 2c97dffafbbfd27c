"""The PC-DARTS base method in both spaces: the edge against a hand-written numpy forward, the
reference code's parameter counts and derivations, exact = hvp = numeric with β, warm-up.

The reference numbers were computed once with the reference code itself (yuhuixu1993/PC-DARTS
`model_search.Network`, DrNAS `201-space/search_model.TinyNetwork` with
`NAS201SearchCell_PartialChannel`) in a scratch PyTorch environment; PyTorch is not a dependency.
"""

import json

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import search_helpers
from cli_helpers import TINY, run_cli

from lease_jax import builders, data, errors, hypergrad, lease, ops, search_space
from lease_jax.configs import tiny
from lease_jax.models import explainer, nb201


def _numpy_edge(x, mixed, k, stride):
  """PC-DARTS's `MixedOp.forward` written out in numpy (NHWC): `mixed` is the operations' sum on
  the first C/k channels; the rest bypass (2x2 max pool at stride 2); then the shuffle."""
  c = x.shape[-1]
  bypass = x[..., c // k:]
  if stride == 2:
    b, h, w, cb = bypass.shape
    bypass = bypass[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, cb).max((2, 4))
  joined = np.concatenate([mixed, bypass], -1)
  out = np.empty_like(joined)
  per_group = c // k
  for g in range(k):           # torch: view(b, k, C/k, h, w).transpose(1, 2): channel g·C/k + i
    for i in range(per_group):  # goes to i·k + g
      out[..., i * k + g] = joined[..., g * per_group + i]
  return out


@pytest.mark.parametrize('stride', [1, 2])
def test_partial_channel_edge_equals_a_numpy_forward(stride):
  c, k = 8, 4
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 6, 6, c))
  weights = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (8,)))
  norm = ops.search_norm()
  edge = explainer.MixedOp(c, stride, norm, 'xla', partial_channels=k)
  params = edge.init(jax.random.PRNGKey(2), x, weights)
  y = edge.apply(params, x, weights)
  # The same operations (the same parameters) on the first C/k channels alone: the mixed part.
  mixed = explainer.MixedOp(c // k, stride, norm, 'xla').apply(params, x[..., :c // k], weights)
  expected = _numpy_edge(np.asarray(x), np.asarray(mixed), k, stride)
  np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('channels,layers,classes,k,expected', [
    (16, 8, 10, 4, 299_578), (16, 8, 10, 2, 671_482), (8, 5, 10, 4, 66_586),
    (16, 8, 100, 4, 322_708)])
def test_darts_space_supernet_parameters_equal_the_reference(channels, layers, classes, k,
                                                             expected):
  assert explainer.count_supernet_params(channels, layers, classes, 'pc_darts', k) == expected
  assert explainer.count_supernet_params(16, 8, 10) == 1_930_618  # DARTS's, unchanged


@pytest.mark.parametrize('channels,cells,k,expected', [
    (16, 5, 4, 174_106), (8, 2, 4, 28_818), (16, 5, 2, 476_506)])
def test_nb201_supernet_parameters_equal_drnas(channels, cells, k, expected):
  model = nb201.Supernet(10, channels, cells, base='pc_darts', partial_channels=k)
  init, _ = nb201.make_explainer(model)
  shapes = jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)))
  assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == expected


# The reference's `Network.genotype()` of α, β drawn as below (0.3 · N(0, 1), this generator).
REFERENCE_NORMAL = [['skip_connect', 0], ['avg_pool_3x3', 1], ['max_pool_3x3', 1],
                    ['sep_conv_5x5', 0], ['avg_pool_3x3', 2], ['max_pool_3x3', 3],
                    ['skip_connect', 1], ['dil_conv_3x3', 0]]
REFERENCE_REDUCE = [['dil_conv_5x5', 1], ['skip_connect', 0], ['dil_conv_5x5', 0],
                    ['max_pool_3x3', 1], ['max_pool_3x3', 2], ['skip_connect', 3],
                    ['sep_conv_3x3', 3], ['sep_conv_5x5', 2]]


def _reference_arch():
  rng = np.random.default_rng(2026)
  arch = {name: rng.normal(size=shape) * 0.3 for name, shape in (
      ('alphas_normal', (14, 8)), ('alphas_reduce', (14, 8)), ('betas_normal', (14,)),
      ('betas_reduce', (14,)))}
  assert arch['alphas_normal'][0, 0] == pytest.approx(-0.23793674254736974)  # same stream
  return arch


def test_derivation_equals_the_reference_and_the_cli_applies_it(tmp_path, capsys):
  from lease_jax import genotype_cli
  arch = _reference_arch()
  genotype = search_space.derive_genotype(arch['alphas_normal'], arch['alphas_reduce'],
                                          betas_normal=arch['betas_normal'],
                                          betas_reduce=arch['betas_reduce'])
  assert genotype.to_json_dict()['normal'] == REFERENCE_NORMAL
  assert genotype.to_json_dict()['reduce'] == REFERENCE_REDUCE
  # β matters: DARTS's rule on the same α keeps other edges.
  darts = search_space.derive_genotype(arch['alphas_normal'], arch['alphas_reduce'])
  assert darts.normal != genotype.normal and darts.reduce != genotype.reduce
  path = tmp_path / 'alphas.json'
  search_space.save_arch(str(path), arch, search_space.ALPHA_FILE_KEYS +
                         search_space.BETA_FILE_KEYS)
  assert genotype_cli.main(['derive', str(path)]) == 0
  assert json.loads(capsys.readouterr().out) == genotype.to_json_dict()
  assert genotype_cli.main(['supernet', '--base', 'pc_darts', '--json']) == 0
  assert json.loads(capsys.readouterr().out) == {'params': 299_578}
  assert genotype_cli.main(['supernet', '--base', 'pc_darts', '--channels', '6']) == 2
  assert 'not divisible by --partial-channels 4' in capsys.readouterr().err


def test_hvp_equals_a_numerical_derivative_with_betas():
  """On the tiny PC-DARTS supernet (β included) with a ResNet-18 audience, in float64 with every
  kink smoothed (the networks' and the audience input's: δ' ⊙ x has no |·| or max): `hvp`
  against central differences of the unrolled objective O_A along random directions of A (every
  entry of α and β moves).

  `exact` is not computed here: it is the same nested `jax.grad` whatever leaves A holds, and
  equals `hvp` on the DARTS supernet (gpu_check.sh's check, test_benchmark.py) and on small
  problems in float64 (test_hypergrad.py). Its float64 evaluation on
  this supernet was the suite's second-longest test (97 s of 231 s, 2 cores, 2026-12-04)."""
  config = tiny.get_config()
  config.explainer.base = 'pc_darts'
  config.explainer.impl = 'smooth'
  config.explanation.audience_input = 'product'
  with jax.enable_x64(True):
    search, state, train, val = search_helpers.float64_search(config)
    assert set(state.alphas) == {'alphas_normal', 'alphas_reduce', 'betas_normal',
                                 'betas_reduce'}
    # β away from uniform, so that the edge weights differ and their derivative is not zero.
    state = state.replace(alphas={**state.alphas, **{
        k: 0.5 * jax.random.normal(jax.random.PRNGKey(i), (14,), jnp.float64)
        for i, k in enumerate(('betas_normal', 'betas_reduce'))}})
    problem = search.spec.problem
    inputs = search_helpers.hypergradient_inputs(search, state, train, val)
    flat = lambda tree: np.asarray(jax.flatten_util.ravel_pytree(tree)[0])
    hvp = hypergrad.hypergradient('hvp', problem, **inputs)
    assert np.linalg.norm(flat(hvp.total['betas_reduce'])) > 0  # tiny: one reduction cell
    objective = jax.jit(lambda a: lease.architecture_objective(
        search.spec, state.replace(alphas=a), train, val))
    for seed in range(3):
      direction = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(10 + seed),
                                                           a.shape, a.dtype), state.alphas)
      moved = lambda t: jax.tree.map(lambda a, d: a + t * d, state.alphas, direction)
      central = lambda h: (float(objective(moved(h))) - float(objective(moved(-h)))) / (2 * h)
      # Richardson's extrapolation of two central differences: error O(h⁴), not O(h²) (the
      # audience term's third derivatives are large even with the kinks smoothed).
      numeric = (4 * central(5e-5) - central(1e-4)) / 3
      analytic = float(np.dot(flat(hvp.total), flat(direction)))
      assert analytic == pytest.approx(numeric, rel=1e-7, abs=1e-10), seed


def test_a_channel_count_that_k_does_not_divide_is_refused():
  config = tiny.get_config()
  config.explainer.base = 'pc_darts'
  config.explainer.channels = 6
  with pytest.raises(errors.SpaceError, match='does not divide explainer.channels'):
    builders.check_config(config, 'search')
  config.explainer.base = 'pcdarts'
  with pytest.raises(errors.SpaceError, match="accepted: darts, pc_darts"):
    builders.check_config(config, 'search')


# ---------------------------------------------------------------------------------------------
# `lease-search` on the PC-DARTS base with `hvp`, its first epoch a warm-up; and its resume.

PC_ARGS = ('--config.explainer.base=pc_darts', '--config.search.warmup_epochs=1')


@pytest.fixture(scope='module')
def pc_run(tmp_path_factory, cli_env):
  workdir = tmp_path_factory.mktemp('pc') / 'run'
  run_cli('main', f'--config={TINY}', f'--workdir={workdir}', *PC_ARGS, env=cli_env)
  return workdir


def test_pc_darts_search_writes_betas_and_keeps_a_frozen_through_the_warm_up(pc_run):
  arch = json.loads((pc_run / 'alphas.json').read_text())
  assert list(arch) == ['alphas_normal', 'alphas_reduce', 'betas_normal', 'betas_reduce']
  assert np.shape(arch['betas_normal']) == (14,)
  summary = json.loads((pc_run / 'summary.json').read_text())
  assert summary['finished'] and summary['mode'] == 'hvp'
  history = [json.loads(line) for line in (pc_run / 'history.jsonl').read_text().splitlines()]
  # Epoch 1 (the warm-up): A bit for bit its initialisation; epoch 2 moves it.
  config = tiny.get_config()
  config.explainer.base = 'pc_darts'
  info, train_source, _ = data.load_sources(config.data)
  train, _ = builders.search_streams(config, info, train_source)
  initial = jax.device_get(builders.build_search(config, info, train.steps_per_epoch)
                           .space.init_arch(jax.random.split(jax.random.PRNGKey(config.seed),
                                                             4)[1], 1e-3))
  for key, value in initial.items():
    assert history[0]['alphas'][key] == np.asarray(value, np.float64).tolist(), key
    assert history[1]['alphas'][key] != history[0]['alphas'][key], key
  assert 'alpha_grad_norm' not in history[0]['metrics']
  assert history[1]['metrics']['alpha_grad_norm'] > 0
  assert 'explainer_val_acc' in history[0]['metrics']
  genotype = search_space.load_genotype(str(pc_run / 'genotype.json'))
  a = search_space.load_alphas(str(pc_run / 'alphas.json'))
  assert search_space.derive_genotype(a['alphas_normal'], a['alphas_reduce'],
                                      betas_normal=a['betas_normal'],
                                      betas_reduce=a['betas_reduce']) == genotype


def test_a_run_stopped_inside_the_warm_up_resumes_bitwise(pc_run, tmp_path, cli_env):
  workdir = tmp_path / 'resumed'
  args = (f'--config={TINY}', f'--workdir={workdir}', *PC_ARGS)
  run_cli('main', *args, '--config.search.max_steps=2', env=cli_env)  # inside the warm-up
  run_cli('main', *args, env=cli_env)
  for name in ('alphas.json', 'genotype.json'):
    assert (workdir / name).read_bytes() == (pc_run / name).read_bytes(), name
  strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != 'elapsed_s'}
                     for line in p.read_text().splitlines()]
  assert strip(workdir / 'history.jsonl') == strip(pc_run / 'history.jsonl')
