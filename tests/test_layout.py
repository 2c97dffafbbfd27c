"""The package's shape (issue 24): no import cycle, no library module importing a command-line
module, spaces found through one registry, and no space name switched on outside `spaces/`."""

import ast
import os
import re

from lease_jax import spaces

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'lease_jax')
# The command-line edge: entry points and what only they use.
COMMAND_LINE = {'lease_jax.main', 'lease_jax.train_main', 'lease_jax.genotype_cli',
                'lease_jax.compare', 'lease_jax.cli_utils', 'lease_jax.report_cli'}


def _modules() -> dict[str, str]:
  out = {}
  for directory, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(directory, name)
        module = os.path.relpath(path[:-3], os.path.dirname(PACKAGE)).replace(os.sep, '.')
        out[module[:-len('.__init__')] if module.endswith('.__init__') else module] = path
  return out


def import_graph() -> dict[str, set[str]]:
  """Every `lease_jax` module's imports of `lease_jax` modules, at any depth of the file."""
  modules = _modules()
  graph = {}
  for module, path in modules.items():
    deps = set()
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        deps.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module:
        for alias in node.names:
          full = f'{node.module}.{alias.name}'
          deps.add(full if full in modules else node.module)
    graph[module] = {d for d in deps if d in modules and d != module}
  return graph


def find_cycle(graph):
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for dep in sorted(graph[node]):
      if state.get(dep) == 'open':
        return stack[stack.index(dep):] + [dep]
      if dep not in state:
        found = visit(dep)
        if found:
          return found
    stack.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_the_import_graph_has_no_cycle():
  graph = import_graph()
  assert 'lease_jax.spaces.darts' in graph and 'lease_jax.errors' in graph
  assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))
  assert find_cycle({'a': {'b'}, 'b': {'a'}}) == ['a', 'b', 'a']  # the search finds one


def test_the_library_imports_no_command_line_module():
  offenders = {module: sorted(deps & COMMAND_LINE) for module, deps in import_graph().items()
               if module not in COMMAND_LINE and deps & COMMAND_LINE}
  assert not offenders


def test_errors_is_a_leaf():
  assert import_graph()['lease_jax.errors'] == set()


def test_every_registered_space_implements_the_protocol():
  for name in spaces.SPACES:
    module = spaces.space_module(name)
    assert callable(module.build) and callable(module.check_config)
    assert isinstance(module.HAS_BENCHMARK, bool)
    space_class = next(v for v in vars(module).values()
                       if isinstance(v, type) and issubclass(v, spaces.Space) and
                       v is not spaces.Space)
    for method in ('init_arch', 'derive', 'describe', 'chosen', 'edge_weights', 'draw_cell',
                   'smallest_side', 'summary'):
      assert callable(getattr(space_class, method)), (name, method)


def test_no_space_name_is_switched_on_outside_spaces():
  pattern = re.compile(r"""[!=]=\s*['"](%s)['"]""" % '|'.join(spaces.SPACES))
  hits = []
  for module, path in _modules().items():
    if module.startswith('lease_jax.spaces') or module.startswith('lease_jax.configs'):
      continue
    with open(path) as f:
      hits += [f'{module}: {line.strip()}' for line in f if pattern.search(line)
               and 'space' in line]
  assert not hits
