"""Genotype derivation (DARTS's rule), the genotype JSON format, and validation."""

import json

import numpy as np
import pytest

from lease_jax import search_space as ss


def _alphas_with(winners):
  """α whose softmax puts weight on `winners[row] = (op, strength)` and is flat elsewhere."""
  a = np.zeros((14, 8))
  for row, (op, strength) in winners.items():
    a[row, ss.PRIMITIVES.index(op)] = strength
  return a


def test_edge_order_is_darts():
  assert ss.edge_endpoints()[:5] == [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1)]
  assert ss.edge_endpoints()[-5:] == [(0, 3), (1, 3), (2, 3), (3, 3), (4, 3)]
  assert ss.num_edges() == 14


def test_derive_known_answer():
  # Node 0: edges 0, 1; node 1: 2, 3, 4; node 2: 5..8; node 3: 9..13.
  normal = _alphas_with({
      0: ('sep_conv_3x3', 2.0), 1: ('max_pool_3x3', 1.0),
      2: ('skip_connect', 0.5), 3: ('none', 9.0), 4: ('dil_conv_5x5', 3.0),
      5: ('sep_conv_5x5', 1.0), 6: ('avg_pool_3x3', 4.0), 8: ('sep_conv_3x3', 2.0),
      9: ('none', 5.0), 12: ('dil_conv_3x3', 1.5), 13: ('sep_conv_5x5', 2.5)})
  reduce = _alphas_with({0: ('max_pool_3x3', 1.0), 1: ('max_pool_3x3', 2.0)})
  g = ss.derive_genotype(normal, reduce)
  # `none` never wins, even at weight 9: edge 3 ranks by its best other op (flat, tied).
  assert g.normal == (('sep_conv_3x3', 0), ('max_pool_3x3', 1),
                      ('dil_conv_5x5', 2), ('skip_connect', 0),
                      ('avg_pool_3x3', 1), ('sep_conv_3x3', 3),
                      ('sep_conv_5x5', 4), ('dil_conv_3x3', 3))
  assert g.normal_concat == (2, 3, 4, 5)
  # Flat rows tie: the stable sort keeps the lower input, the first non-none op wins.
  assert g.reduce[:2] == (('max_pool_3x3', 1), ('max_pool_3x3', 0))
  assert g.reduce[2:4] == (('max_pool_3x3', 0), ('max_pool_3x3', 1))


def test_derive_rejects_bad_shapes():
  with pytest.raises(ss.GenotypeError, match='shape'):
    ss.derive_genotype(np.zeros((13, 8)), np.zeros((14, 8)))


def test_json_round_trip_and_registry(tmp_path):
  for name, g in ss.GENOTYPES.items():
    path = tmp_path / f'{name}.json'
    ss.save_genotype(str(path), g)
    assert ss.load_genotype(str(path)) == g
    assert json.loads(path.read_text())['normal'][0] == list(g.normal[0])
  assert ss.load_genotype('DARTS_V2') is ss.GENOTYPES['DARTS_V2']
  assert ss.GENOTYPES['DARTS_V2'].normal[-1] == ('dil_conv_3x3', 2)


@pytest.mark.parametrize('mutate,message', [
    (lambda d: d['normal'].__setitem__(0, ['conv_9x9', 0]), 'unknown operation'),
    (lambda d: d['normal'].__setitem__(0, ['none', 0]), 'unknown operation'),
    (lambda d: d['normal'].__setitem__(2, ['sep_conv_3x3', 3]), 'input 3 is not a state'),
    (lambda d: d['reduce'].pop(), 'a cell needs exactly two per node'),
    (lambda d: d['normal'].__setitem__(1, 'sep_conv_3x3'), 'not an \\[operation, input\\] pair'),
    (lambda d: d.pop('reduce_concat'), 'missing'),
    (lambda d: d.__setitem__('extra', 1), 'unexpected'),
    (lambda d: d.__setitem__('normal_concat', [2, 2, 9]), 'distinct'),
])
def test_malformed_genotypes_are_rejected(tmp_path, mutate, message):
  data = ss.GENOTYPES['DARTS_V2'].to_json_dict()
  mutate(data)
  path = tmp_path / 'bad.json'
  path.write_text(json.dumps(data))
  with pytest.raises(ss.GenotypeError, match=message):
    ss.load_genotype(str(path))


def test_unreadable_genotype_sources(tmp_path):
  with pytest.raises(ss.GenotypeError, match='neither a registered genotype'):
    ss.load_genotype(str(tmp_path / 'missing.json'))
  bad = tmp_path / 'bad.json'
  bad.write_text('{"normal": [')
  with pytest.raises(ss.GenotypeError, match='not valid JSON'):
    ss.load_genotype(str(bad))


def test_alpha_files(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / 'alphas.json'
  arch = {'alphas_normal': rng.normal(size=(14, 8)), 'alphas_reduce': rng.normal(size=(14, 8))}
  ss.save_arch(str(path), arch, ss.ALPHA_FILE_KEYS)
  loaded = ss.load_alphas(str(path))
  assert loaded['alphas_normal'].shape == (14, 8)
  path.write_text(json.dumps({'alphas_normal': [[0.0] * 7] * 14, 'alphas_reduce': []}))
  with pytest.raises(ss.GenotypeError, match='expected \\(14, 8\\)'):
    ss.load_alphas(str(path))
