"""Shared test settings: small, deterministic, CPU, one compilation cache per session."""

import os
import shutil
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Four CPU devices for the data-parallel tests (test_parallel.py); everything else uses one.
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=4').strip()
# Compile time dominates this suite (the programs are large, the arrays tiny): skip XLA's
# optimisation passes. Numerics are unchanged; only speed on large inputs would suffer.
os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] = 'true'
# Two XLA:CPU settings that compile faster: its older loop emitters instead of the MLIR fusion
# emitters, and each program's LLVM code generated as one piece (the suite's two workers already
# keep both cores busy). Measured on 2 cores (2026-12-03, another process niced beside it),
# compiling a tiny hvp search step's 27 programs from nothing, three runs each: default 25-28 s,
# emitters off 16-22 s, emitters off and one piece 13-16 s; its iteration 1.6-1.9 s in all
# three. Results differ from the default build's in the last bits (a tiny search's α after
# 6 steps: 6e-9 apart), the same on every run: the suite compares runs made under its own
# settings, and numerical derivatives at tolerances far above that.
for flag in ('--xla_cpu_use_fusion_emitters=false', '--xla_cpu_parallel_codegen_split_count=1'):
  if flag.split('=')[0] not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + flag).strip()
# One persistent compilation cache for the whole session, shared by the in-process tests and the
# command-line subprocesses (and by pytest-xdist workers, which inherit the environment): tests
# build the same tiny programs from fresh closures again and again, and the cache turns every
# repeat into a load. Everything is cached, however quick to compile.
_OWN_CACHE = 'LEASE_JAX_CACHE' not in os.environ
if _OWN_CACHE:
  os.environ['LEASE_JAX_CACHE'] = tempfile.mkdtemp(prefix='lease_jax_test_cache_')
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

import jax  # noqa: E402
import pytest  # noqa: E402

import mappings  # noqa: E402

jax.config.update('jax_disable_most_optimizations', True)
jax.config.update('jax_compilation_cache_dir', os.environ['LEASE_JAX_CACHE'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


# The files that take longest, longest first. CI's two workers take whole files (`--dist
# loadfile`) in collection order, so a long file collected late runs alone while the other worker
# idles; longest first is the classic scheduling remedy. Files not listed follow in their order.
# Measured (summed seconds per file, CI's pytest command with `--durations=0` from a clean clone of
# 00a7e7c, cold cache, the NB201 study niced beside it, 2026-12-04): pipeline 431, pc_darts 386,
# faults 363, parallel 302, benchmark 242, nb201 210, models 186, lease 145, hypergrad 126,
# kernels 27; the rest 49 together (2,466 s of tests in 1,287 s). Then pc_darts lost its float64
# `exact` (97 s) and parallel its 4-device `exact` (95 s): ~290 and ~207, the order below.
LONGEST_FIRST = ('test_pipeline.py', 'test_faults.py', 'test_pc_darts.py', 'test_benchmark.py',
                 'test_nb201.py', 'test_parallel.py', 'test_models.py', 'test_lease.py',
                 'test_hypergrad.py', 'test_kernels.py')


def pytest_collection_modifyitems(items):
  """Collection order: `LONGEST_FIRST`'s files, then the rest; each file's tests in order."""
  rank = lambda item: (LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST
                       else len(LONGEST_FIRST))
  items.sort(key=rank)  # stable: a file's tests keep their order


def pytest_unconfigure(config):
  """Removes the session's cache (only the process that made it: xdist workers share it)."""
  del config
  if _OWN_CACHE and not os.environ.get('PYTEST_XDIST_WORKER'):
    shutil.rmtree(os.environ['LEASE_JAX_CACHE'], ignore_errors=True)


@pytest.fixture(autouse=True, scope='module')
def _compiled_programs_released_after_each_file():
  """Drops jax's in-memory compiled programs after each test file.

  Every CPU executable jax keeps holds memory mappings of its own (~3 for a small program, many
  more for the supernet's pieces), and jax keeps every program it compiled for the life of the
  process: an xdist worker running half the suite passed Linux's limit of 65,530 mappings per
  process (`vm.max_map_count`), and the next mapping XLA asked for failed as a segfault, in
  whichever test came then (compiling, or loading a program from the persistent cache; CI's
  crashes in test_hypergrad and test_pc_darts, late files). A later file that needs a program
  loads it from the persistent cache. Measured with this: a worker's count falls from 32,887 to
  6,892 after test_parallel.py, the largest file's peak."""
  yield
  mappings.release_compiled_programs()


@pytest.fixture(autouse=True)
def _compiled_programs_released_near_the_mapping_limit():
  """Within a file, the same release after any test that leaves the process holding more than a
  third of the limit: a file that grows stays clear of it too."""
  yield
  if mappings.count() > mappings.limit() // 3:
    mappings.release_compiled_programs()


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats (numerical derivative checks)."""
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope='session')
def cli_env():
  """Environment of the command-line tests' subprocesses: CPU, the suite's fast-compile setting
  and its one compilation cache (set above)."""
  return dict(os.environ, PYTHONUNBUFFERED='1')
