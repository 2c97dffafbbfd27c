"""The `lease-genotype` command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from lease_jax import genotype_cli, search_space


def run(capsys, *argv):
  code = genotype_cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def test_derive(capsys, tmp_path):
  rng = np.random.default_rng(0)
  normal, reduce = rng.normal(size=(14, 8)), rng.normal(size=(14, 8))
  path = tmp_path / 'alphas.json'
  search_space.save_arch(str(path), {'alphas_normal': normal, 'alphas_reduce': reduce},
                         search_space.ALPHA_FILE_KEYS)
  code, out, _ = run(capsys, 'derive', str(path))
  assert code == 0
  assert json.loads(out) == search_space.derive_genotype(normal, reduce).to_json_dict()


def test_params_json_matches_darts(capsys):
  code, out, _ = run(capsys, 'params', 'DARTS_V2', '--network', 'cifar', '--channels', '36',
                     '--layers', '20', '--num-classes', '10', '--json')
  assert code == 0 and json.loads(out)['params_no_aux'] == 3_349_342
  code, out, _ = run(capsys, 'params', 'DARTS_V2', '--network', 'imagenet', '--channels', '48',
                     '--layers', '14', '--num-classes', '1000', '--json')
  assert code == 0 and json.loads(out)['params_no_aux'] == 4_718_752
  assert json.loads(out)['params'] > 4_718_752


def test_draw(capsys, tmp_path):
  code, out, _ = run(capsys, 'draw', 'DARTS_V2', '--out', str(tmp_path))
  assert code == 0
  for name in ('normal', 'reduction'):
    png = (tmp_path / f'{name}.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    assert '<svg' in (tmp_path / f'{name}.svg').read_text()
    assert 'sep_conv_3x3' in (tmp_path / 'normal.dot').read_text()


@pytest.mark.parametrize('content,message', [
    ('{"normal": [["sep_conv_3x3", 0]]}', 'keys must be exactly'),
    ('not json', 'not valid JSON'),
])
def test_bad_files_get_one_line_errors(capsys, tmp_path, content, message):
  path = tmp_path / 'g.json'
  path.write_text(content)
  code, out, err = run(capsys, 'params', str(path), '--json')
  assert code == 2 and out == ''
  assert err.count('\n') == 1 and message in err and str(path) in err


def test_console_script_entry_point():
  result = subprocess.run([sys.executable, '-m', 'lease_jax.genotype_cli', 'derive',
                           '/nonexistent/alphas.json'], capture_output=True, text=True)
  assert result.returncode == 2 and 'no such file' in result.stderr
