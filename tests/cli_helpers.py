"""Driving the command-line tools as a user would: a subprocess per command, one shared
compilation cache for the whole test session (`cli_env` in conftest.py)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, 'lease_jax', 'configs')
TINY = os.path.join(CONFIG_DIR, 'tiny.py')


def run_cli(prog, *args, env, check=True, timeout=900):
  """`python -m lease_jax.<prog> args`; raises with its stderr if `check` and it fails."""
  result = subprocess.run([sys.executable, '-m', f'lease_jax.{prog}', *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
  if check and result.returncode != 0:
    raise AssertionError(f'{prog} {args} failed ({result.returncode}):\n{result.stderr[-3000:]}')
  return result


def error_lines(result) -> list[str]:
  """stderr without progress-bar redraws and blank lines: what a user reads."""
  text = result.stderr.replace('\r', '\n')
  return [line for line in text.splitlines()
          if line.strip() and not line.lstrip().startswith(('search:', 'train:'))]


def snapshot(directory) -> dict:
  """Every file under `directory` with its bytes (to show that nothing was touched)."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      if os.path.islink(path) and not os.path.exists(path):  # a dangling link: its target
        out[os.path.relpath(path, directory)] = ('link', os.readlink(path))
        continue
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out
