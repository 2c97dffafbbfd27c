"""The DARTS search space: primitives, edge order, genotypes and their derivation from α.

Edge order (DARTS's): the cell has `steps` intermediate nodes; node i takes one edge from every
earlier state, in the order [s0, s1, node 0, ..., node i-1]. With 4 steps that is 2 + 3 + 4 + 5 =
14 edges, and the architecture α of one cell type is a [14, 8] array, rows in that order, columns
in `PRIMITIVES` order.

A genotype keeps, per node, the two incoming edges whose best non-`none` softmax weight is
largest, each with its best non-`none` operation (DARTS's `Network.genotype`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from lease_jax import errors, writers

PRIMITIVES = (
    'none',
    'max_pool_3x3',
    'avg_pool_3x3',
    'skip_connect',
    'sep_conv_3x3',
    'sep_conv_5x5',
    'dil_conv_3x3',
    'dil_conv_5x5',
)
NUM_OPS = len(PRIMITIVES)

# Operations an evaluation cell may hold: the search primitives but `none`, plus the two extra
# operations of the NASNet / AmoebaNet genotypes of the DARTS reference.
EVAL_OPS = PRIMITIVES[1:] + ('sep_conv_7x7', 'conv_7x1_1x7')


def num_edges(steps: int = 4) -> int:
  """Number of edges (rows of α) of a search cell with `steps` intermediate nodes."""
  return sum(2 + i for i in range(steps))


def edge_endpoints(steps: int = 4) -> list[tuple[int, int]]:
  """(source state, destination node) of every edge, in α's row order.

  States are numbered 0 = s0 (c_{k-2}), 1 = s1 (c_{k-1}), 2 + i = node i.
  """
  return [(src, node) for node in range(steps) for src in range(2 + node)]


@dataclasses.dataclass(frozen=True)
class Genotype:
  """A discrete cell pair, field for field DARTS's `Genotype` namedtuple.

  `normal` / `reduce` hold two `(operation, input state)` pairs per intermediate node; input
  state 0 is c_{k-2}, 1 is c_{k-1}, j >= 2 is node j - 2. `*_concat` lists the states whose
  concatenation is the cell's output.
  """

  normal: tuple[tuple[str, int], ...]
  normal_concat: tuple[int, ...]
  reduce: tuple[tuple[str, int], ...]
  reduce_concat: tuple[int, ...]

  def to_json_dict(self) -> dict[str, Any]:
    return {
        'normal': [[op, int(i)] for op, i in self.normal],
        'normal_concat': [int(i) for i in self.normal_concat],
        'reduce': [[op, int(i)] for op, i in self.reduce],
        'reduce_concat': [int(i) for i in self.reduce_concat],
    }

  def to_json(self) -> str:
    return json.dumps(self.to_json_dict())

  @classmethod
  def from_json_dict(cls, data: Any, source: str = 'genotype') -> 'Genotype':
    """Builds a genotype from its JSON form, or raises `GenotypeError` naming what is wrong."""
    if not isinstance(data, Mapping):
      raise GenotypeError(f'{source}: expected a JSON object with keys normal, normal_concat, '
                          f'reduce, reduce_concat; got {type(data).__name__}')
    expected = {'normal', 'normal_concat', 'reduce', 'reduce_concat'}
    missing, extra = expected - set(data), set(data) - expected
    if missing or extra:
      raise GenotypeError(f'{source}: keys must be exactly {sorted(expected)}; '
                          f'missing {sorted(missing)}, unexpected {sorted(extra)}')
    fields = {}
    for cell in ('normal', 'reduce'):
      edges = _parse_edges(data[cell], f'{source}: {cell}')
      fields[cell] = edges
      fields[f'{cell}_concat'] = _parse_concat(data[f'{cell}_concat'], len(edges) // 2 + 2,
                                               f'{source}: {cell}_concat')
    return cls(**fields)

  @property
  def steps(self) -> tuple[int, int]:
    """Intermediate nodes of the (normal, reduction) cell."""
    return len(self.normal) // 2, len(self.reduce) // 2


GenotypeError = errors.GenotypeError  # this module's error (lease_jax.errors)


def _parse_edges(edges: Any, where: str) -> tuple[tuple[str, int], ...]:
  if not isinstance(edges, Sequence) or isinstance(edges, str):
    raise GenotypeError(f'{where} must be a list of [operation, input] pairs')
  if len(edges) < 2 or len(edges) % 2:
    raise GenotypeError(f'{where} has {len(edges)} edges; a cell needs exactly two per node '
                        f'(an even number >= 2, 8 for the 4-node DARTS cell)')
  parsed = []
  for k, edge in enumerate(edges):
    if (not isinstance(edge, Sequence) or isinstance(edge, str) or len(edge) != 2
        or not isinstance(edge[0], str) or isinstance(edge[1], bool)
        or not isinstance(edge[1], (int, np.integer))):
      raise GenotypeError(f'{where}[{k}] = {edge!r} is not an [operation, input] pair '
                          f'(a string and an integer)')
    op, index = edge[0], int(edge[1])
    if op not in EVAL_OPS:
      raise GenotypeError(f'{where}[{k}]: unknown operation {op!r}; accepted: '
                          f'{", ".join(EVAL_OPS)}')
    node = k // 2
    if not 0 <= index < node + 2:
      raise GenotypeError(f'{where}[{k}]: input {index} is not a state before node {node}; '
                          f'accepted 0..{node + 1} (0 = c_{{k-2}}, 1 = c_{{k-1}}, j = node j-2)')
    parsed.append((op, index))
  return tuple(parsed)


def _parse_concat(concat: Any, num_states: int, where: str) -> tuple[int, ...]:
  if (not isinstance(concat, Sequence) or isinstance(concat, str) or not concat
      or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in concat)):
    raise GenotypeError(f'{where} must be a non-empty list of state indices')
  if len(set(concat)) != len(concat) or not all(0 <= i < num_states for i in concat):
    raise GenotypeError(f'{where} = {list(concat)}: indices must be distinct and in '
                        f'0..{num_states - 1}')
  return tuple(int(i) for i in concat)


# ---------------------------------------------------------------------------------------------
# Deriving a genotype from α (DARTS's rule).


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
  z = np.exp(x - np.max(x, axis=axis, keepdims=True))
  return z / np.sum(z, axis=axis, keepdims=True)


def node_softmax(betas: np.ndarray, in_degrees: Sequence[int]) -> np.ndarray:
  """PC-DARTS's edge weights: the softmax of β over each node's incoming edges, which are
  consecutive rows (`in_degrees[i]` of them for node i; DARTS: i + 2, NB201: i + 1)."""
  betas = np.asarray(betas, np.float64)
  parts, start = [], 0
  for degree in in_degrees:
    parts.append(softmax(betas[start:start + degree]))
    start += degree
  return np.concatenate(parts)


def darts_in_degrees(steps: int = 4) -> tuple[int, ...]:
  """The incoming edges of each node of a DARTS cell: i + 2 for node i."""
  return tuple(node + 2 for node in range(steps))


def derive_cell(alphas: np.ndarray, steps: int = 4,
                betas: np.ndarray | None = None) -> tuple[tuple[str, int], ...]:
  """DARTS's `_parse` of one cell type's α ([num_edges, 8], raw logits); with β ([num_edges]),
  PC-DARTS's (`Network.genotype`): each edge's softmax(α) times its edge weight
  `node_softmax(β)`.

  For node i the candidate edges are sorted (stably) by their largest non-`none` weight,
  descending; the first two are kept, in that order, each with its best non-`none` operation (the
  first on ties).
  """
  weights = softmax(np.asarray(alphas, np.float64))
  if betas is not None:
    weights = weights * node_softmax(betas, darts_in_degrees(steps))[:, None]
  none = PRIMITIVES.index('none')
  gene, start = [], 0
  for node in range(steps):
    rows = weights[start:start + node + 2]
    masked = np.where(np.arange(NUM_OPS) == none, -np.inf, rows)
    best = masked.max(axis=1)
    edges = sorted(range(node + 2), key=lambda j: -best[j])[:2]
    gene.extend((PRIMITIVES[int(np.argmax(masked[j]))], j) for j in edges)
    start += node + 2
  return tuple(gene)


def derive_genotype(alphas_normal, alphas_reduce, steps: int = 4, multiplier: int = 4,
                    betas_normal=None, betas_reduce=None) -> Genotype:
  """The discrete architecture of a search state (DARTS's `Network.genotype`; with β, the
  PC-DARTS rule of `derive_cell`)."""
  for name, a in (('alphas_normal', alphas_normal), ('alphas_reduce', alphas_reduce)):
    shape = np.shape(a)
    if shape != (num_edges(steps), NUM_OPS):
      raise GenotypeError(f'{name} has shape {shape}; expected ({num_edges(steps)}, {NUM_OPS}) '
                          f'(edges x operations, DARTS order)')
  if (betas_normal is None) != (betas_reduce is None):
    raise GenotypeError('betas_normal and betas_reduce come together (PC-DARTS) or not at all')
  for name, b in (('betas_normal', betas_normal), ('betas_reduce', betas_reduce)):
    if b is not None and np.shape(b) != (num_edges(steps),):
      raise GenotypeError(f'{name} has shape {np.shape(b)}; expected ({num_edges(steps)},) '
                          f'(one per edge, DARTS order)')
  concat = tuple(range(2 + steps - multiplier, steps + 2))
  return Genotype(normal=derive_cell(alphas_normal, steps, betas_normal), normal_concat=concat,
                  reduce=derive_cell(alphas_reduce, steps, betas_reduce), reduce_concat=concat)


ALPHA_FILE_KEYS = ('alphas_normal', 'alphas_reduce')
BETA_FILE_KEYS = ('betas_normal', 'betas_reduce')


def load_alphas(path: str) -> dict[str, np.ndarray]:
  """Reads `{"alphas_normal": [[8 numbers] x 14], "alphas_reduce": [...]}`, with PC-DARTS's
  `"betas_normal": [14 numbers], "betas_reduce": [...]` when the search had them; validated."""
  data = _read_json(path)
  if not isinstance(data, Mapping) or set(data) not in (set(ALPHA_FILE_KEYS),
                                                        set(ALPHA_FILE_KEYS + BETA_FILE_KEYS)):
    raise GenotypeError(f'{path}: expected a JSON object with exactly the keys alphas_normal and '
                        f'alphas_reduce (and, from a PC-DARTS search, betas_normal and '
                        f'betas_reduce)')
  out = {}
  for key in ('alphas_normal', 'alphas_reduce'):
    try:
      a = np.asarray(data[key], np.float64)
    except (TypeError, ValueError) as e:
      raise GenotypeError(f'{path}: {key} is not a numeric matrix ({e})') from None
    if a.ndim != 2 or a.shape[1] != NUM_OPS or a.shape[0] not in _EDGE_COUNTS:
      raise GenotypeError(f'{path}: {key} has shape {a.shape}; expected (14, 8) (edges x '
                          f'operations; another node count n gives n(n+3)/2 rows)')
    if not np.all(np.isfinite(a)):
      raise GenotypeError(f'{path}: {key} holds non-finite values')
    out[key] = a
  if out['alphas_normal'].shape != out['alphas_reduce'].shape:
    raise GenotypeError(f'{path}: alphas_normal and alphas_reduce have different shapes')
  for key in BETA_FILE_KEYS:
    if key not in data:
      continue
    try:
      b = np.asarray(data[key], np.float64)
    except (TypeError, ValueError) as e:
      raise GenotypeError(f'{path}: {key} is not a numeric vector ({e})') from None
    if b.shape != out['alphas_normal'].shape[:1]:
      raise GenotypeError(f'{path}: {key} has shape {b.shape}; expected '
                          f'{out["alphas_normal"].shape[:1]} (one per edge)')
    if not np.all(np.isfinite(b)):
      raise GenotypeError(f'{path}: {key} holds non-finite values')
    out[key] = b
  return out


_EDGE_COUNTS = {num_edges(s): s for s in range(1, 12)}


def steps_of(alphas: np.ndarray) -> int:
  """The number of intermediate nodes of a cell whose α has this many rows."""
  return _EDGE_COUNTS[np.shape(alphas)[0]]


def save_arch(path: str, arch: Mapping[str, Any], keys: Sequence[str]) -> None:
  """`alphas.json`: the entries `keys` of A, as float64 lists."""
  writers.write_json_atomic(path, {k: np.asarray(arch[k], np.float64).tolist() for k in keys})


# ---------------------------------------------------------------------------------------------
# Registry and files.

def _g(normal, reduce, normal_concat=(2, 3, 4, 5), reduce_concat=(2, 3, 4, 5)) -> Genotype:
  return Genotype(tuple(normal), tuple(normal_concat), tuple(reduce), tuple(reduce_concat))


# Published cells, as listed in the DARTS reference's `cnn/genotypes.py`.
GENOTYPES: dict[str, Genotype] = {
    'NASNet': _g(
        normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 0),
                ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('skip_connect', 0),
                ('avg_pool_3x3', 0), ('avg_pool_3x3', 0), ('sep_conv_3x3', 1),
                ('skip_connect', 1)],
        normal_concat=(2, 3, 4, 5, 6),
        reduce=[('sep_conv_5x5', 1), ('sep_conv_7x7', 0), ('max_pool_3x3', 1),
                ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 0),
                ('skip_connect', 3), ('avg_pool_3x3', 2), ('sep_conv_3x3', 2),
                ('max_pool_3x3', 1)],
        reduce_concat=(4, 5, 6)),
    'AmoebaNet': _g(
        normal=[('avg_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0),
                ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('avg_pool_3x3', 3),
                ('sep_conv_3x3', 1), ('skip_connect', 1), ('skip_connect', 0),
                ('avg_pool_3x3', 1)],
        normal_concat=(4, 5, 6),
        reduce=[('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('max_pool_3x3', 0),
                ('sep_conv_7x7', 2), ('sep_conv_7x7', 0), ('avg_pool_3x3', 1),
                ('max_pool_3x3', 0), ('max_pool_3x3', 1), ('conv_7x1_1x7', 0),
                ('sep_conv_3x3', 5)],
        reduce_concat=(3, 4, 6)),
    'DARTS_V1': _g(
        normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0),
                ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1),
                ('sep_conv_3x3', 0), ('skip_connect', 2)],
        reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2),
                ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2),
                ('skip_connect', 2), ('avg_pool_3x3', 0)]),
    'DARTS_V2': _g(
        normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),
                ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0),
                ('skip_connect', 0), ('dil_conv_3x3', 2)],
        reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2),
                ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2),
                ('skip_connect', 2), ('max_pool_3x3', 1)]),
}
GENOTYPES['DARTS'] = GENOTYPES['DARTS_V2']


def _read_json(path: str) -> Any:
  if not os.path.isfile(path):
    raise GenotypeError(f'{path}: no such file')
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise GenotypeError(f'{path}: not valid JSON ({e})') from None


NB201_NOT_EVALUATED = ('lease-train evaluates DARTS-space genotypes; an NB201 cell\'s accuracy is '
                       'looked up in the benchmark\'s table (config.benchmark.table)')


def load_genotype(name_or_path: str) -> Genotype:
  """A registry name (e.g. `DARTS_V2`) or the path of a genotype JSON file."""
  if name_or_path in GENOTYPES:
    return GENOTYPES[name_or_path]
  if os.path.isdir(name_or_path):
    inside = os.path.join(name_or_path, 'genotype.json')
    hint = (f'; the search\'s cell is {inside}' if os.path.exists(inside)
            else '; give a genotype JSON file (a search workdir holds genotype.json)')
    raise GenotypeError(f'{name_or_path!r} is a directory{hint}')
  if not os.path.exists(name_or_path):
    if name_or_path.strip().startswith('|') and '~' in name_or_path:
      raise GenotypeError(f'{name_or_path!r} is an NB201 arch string; {NB201_NOT_EVALUATED}')
    raise GenotypeError(f'{name_or_path!r} is neither a registered genotype '
                        f'({", ".join(GENOTYPES)}) nor an existing JSON file')
  data = _read_json(name_or_path)
  if isinstance(data, Mapping) and 'arch' in data and set(data) <= {'space', 'arch'}:
    raise GenotypeError(f'{name_or_path} holds an NB201 cell ({data.get("arch")}); '
                        f'{NB201_NOT_EVALUATED}')
  return Genotype.from_json_dict(data, source=name_or_path)


def save_genotype(path: str, genotype: Genotype) -> None:
  writers.write_json_atomic(path, genotype.to_json_dict())


# ---------------------------------------------------------------------------------------------
# NAS-Bench-201 (Dong & Yang, ICLR 2020): a second, separate space.
#
# One cell of 4 nodes; node i = Σ_{j<i} o_{j→i}(node j); 6 edges, each one of 5 operations. α is
# one [6, 5] array shared by every cell, rows in the reference code's edge order (its sorted
# '1<-0', '2<-0', '2<-1', '3<-0', '3<-1', '3<-2'), columns in `NB201_OPS` order. An architecture
# is written as NB201's string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (node by node, `op~j` the
# edge from node j) and is derived per edge as the strongest operation, `none` included.

NB201_OPS = ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')
NB201_NODES = 4
NB201_EDGES = tuple((i, j) for i in range(1, NB201_NODES) for j in range(i))  # (node, source)


@dataclasses.dataclass(frozen=True)
class Nb201Arch:
  """An NB201 cell: one operation per edge, in `NB201_EDGES` order."""

  ops: tuple[str, ...]

  def __post_init__(self):
    if len(self.ops) != len(NB201_EDGES):
      raise GenotypeError(f'an NB201 cell has {len(NB201_EDGES)} edges, got {len(self.ops)}')
    bad = [op for op in self.ops if op not in NB201_OPS]
    if bad:
      raise GenotypeError(f'NB201 operations {bad}; accepted: {", ".join(NB201_OPS)}')

  def to_string(self) -> str:
    """NB201's arch string, e.g. `|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~2|`."""
    nodes = []
    for node in range(1, NB201_NODES):
      edges = [f'{op}~{j}' for (i, j), op in zip(NB201_EDGES, self.ops) if i == node]
      nodes.append('|' + '|'.join(edges) + '|')
    return '+'.join(nodes)

  @classmethod
  def from_string(cls, text: str) -> 'Nb201Arch':
    """Parses an arch string; a malformed one is a `GenotypeError` naming what is wrong."""
    form = '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'
    text = str(text).strip()
    nodes = text.split('+')
    if len(nodes) != NB201_NODES - 1:
      raise GenotypeError(f'NB201 arch string {text!r} has {len(nodes)} nodes; expected '
                          f'{NB201_NODES - 1}, as {form}')
    ops = []
    for node, part in enumerate(nodes, start=1):
      if not (part.startswith('|') and part.endswith('|')):
        raise GenotypeError(f'NB201 arch string {text!r}: node {node} is {part!r}; expected '
                            f'|op~j|... as {form}')
      edges = part[1:-1].split('|')
      if len(edges) != node:
        raise GenotypeError(f'NB201 arch string {text!r}: node {node} has {len(edges)} '
                            f'edges; expected {node}, as {form}')
      for j, edge in enumerate(edges):
        op, sep, source = edge.rpartition('~')
        if not sep or source != str(j):
          raise GenotypeError(f'NB201 arch string {text!r}: edge {edge!r} of node {node} '
                              f'must read op~{j}')
        ops.append(op)
    return cls(tuple(ops))

  def to_json_dict(self) -> dict[str, Any]:
    return {'space': 'nb201', 'arch': self.to_string()}


def derive_nb201(alphas: np.ndarray) -> Nb201Arch:
  """Per edge the operation of largest α (softmax is monotone), `none` included."""
  alphas = np.asarray(alphas)
  if alphas.shape != (len(NB201_EDGES), len(NB201_OPS)):
    raise GenotypeError(f'NB201 α has shape {alphas.shape}; expected '
                        f'{(len(NB201_EDGES), len(NB201_OPS))}')
  return Nb201Arch(tuple(NB201_OPS[k] for k in np.argmax(alphas, axis=1)))
