"""Drawings: cells as DARTS's `visualize.py` draws them, and α heatmaps. Matplotlib, no display.

A cell is drawn left to right: inputs c_{k-2} and c_{k-1} (green), the intermediate nodes
(blue), each edge labelled with its operation, and every intermediate node feeding the output
c_{k} (yellow). Each drawing is written as PNG and SVG, plus the Graphviz source (`.dot`, the
layout of the DARTS figure) for users who have Graphviz.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lease_jax.search_space import PRIMITIVES, Genotype, edge_endpoints, softmax  # noqa: E402

_GREEN, _BLUE, _YELLOW = '#b4eeb4', '#add8e6', '#eee8aa'


def _state_name(index: int) -> str:
  return {0: 'c_{k-2}', 1: 'c_{k-1}'}.get(index, str(index - 2))


def cell_dot(edges: Sequence[tuple[str, int]], concat: Sequence[int]) -> str:
  """Graphviz source of one cell, as DARTS's `visualize.plot` writes it."""
  lines = ['digraph {', '  rankdir=LR;',
           '  node [style=filled, shape=rect, fontname="times", fontsize=20];',
           '  edge [fontname="times", fontsize=20];',
           f'  "c_{{k-2}}" [fillcolor="darkseagreen2"];', f'  "c_{{k-1}}" [fillcolor="darkseagreen2"];']
  steps = len(edges) // 2
  lines += [f'  "{i}" [fillcolor="lightblue"];' for i in range(steps)]
  for k, (op, index) in enumerate(edges):
    lines.append(f'  "{_state_name(index)}" -> "{k // 2}" [label="{op}"];')
  lines.append('  "c_{k}" [fillcolor="palegoldenrod"];')
  lines += [f'  "{_state_name(i)}" -> "c_{{k}}";' for i in concat]
  return '\n'.join(lines + ['}']) + '\n'


def _layout(edges, concat):
  steps = len(edges) // 2
  depth = {0: 0, 1: 0}
  for node in range(steps):
    inputs = [edges[2 * node][1], edges[2 * node + 1][1]]
    depth[node + 2] = 1 + max(depth[i] for i in inputs)
  out_col = max(depth.values()) + 1
  columns: dict[int, list[int]] = {}
  for state, col in depth.items():
    columns.setdefault(col, []).append(state)
  pos = {}
  for col, states in columns.items():
    for row, state in enumerate(states):
      pos[state] = (3.0 * col, 1.6 * ((len(states) - 1) / 2 - row))
  pos['out'] = (3.0 * out_col, 0.0)
  return pos


def draw_cell(ax, edges: Sequence[tuple[str, int]], concat: Sequence[int], title: str) -> None:
  pos = _layout(edges, concat)
  box = dict(boxstyle='round,pad=0.35', linewidth=1.5)
  arrow = dict(arrowstyle='->', color='gray', linewidth=1.2, shrinkA=16, shrinkB=16)
  colors = plt.get_cmap('tab10')
  for k, (op, index) in enumerate(edges):
    (x0, y0), (x1, y1) = pos[index], pos[k // 2 + 2]
    bend = 0.18 * (1 if k % 2 else -1)
    color = colors(k % 10)
    ax.annotate('', (x1, y1), (x0, y0), arrowprops=dict(
        arrow, color=color, connectionstyle=f'arc3,rad={bend}'))
    # The label sits on the curve (matplotlib's arc3 is a quadratic Bezier with control point
    # midpoint + rad·(dy, -dx)), at staggered positions so that labels of edges leaving the
    # same state do not overlap.
    dx, dy = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + bend * dy, (y0 + y1) / 2 - bend * dx
    t = 0.62 if k % 2 else 0.38
    lx = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t ** 2 * x1
    ly = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t ** 2 * y1
    ax.text(lx, ly, op, fontsize=8, ha='center', va='center', family='serif', color=color,
            bbox=dict(facecolor='white', edgecolor=color, linewidth=0.6, pad=1.0))
  for state in concat:
    ax.annotate('', pos['out'], pos[state], arrowprops=dict(arrow, connectionstyle='arc3'))
  for state, (x, y) in pos.items():
    if state == 'out':
      label, color = 'c_{k}', _YELLOW
    else:
      label, color = _state_name(state), _GREEN if state < 2 else _BLUE
    ax.text(x, y, f'${label}$' if '_' in label else label, ha='center', va='center',
            fontsize=12, family='serif', bbox=dict(box, facecolor=color))
  xs = [p[0] for p in pos.values()]
  ys = [p[1] for p in pos.values()]
  ax.set_xlim(min(xs) - 1, max(xs) + 1)
  ax.set_ylim(min(ys) - 1, max(ys) + 1)
  ax.set_title(title, family='serif')
  ax.axis('off')


def draw_genotype(genotype: Genotype, out_dir: str, prefix: str = '') -> list[str]:
  """Writes `{prefix}normal.{png,svg,dot}` and `{prefix}reduction.{png,svg,dot}`; returns paths."""
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for name, edges, concat in (('normal', genotype.normal, genotype.normal_concat),
                              ('reduction', genotype.reduce, genotype.reduce_concat)):
    width = 3.2 * (len(edges) // 2 + 1)
    fig, ax = plt.subplots(figsize=(width, 5.5))
    draw_cell(ax, edges, concat, f'{name} cell')
    base = os.path.join(out_dir, f'{prefix}{name}')
    for ext in ('png', 'svg'):
      fig.savefig(f'{base}.{ext}', bbox_inches='tight', dpi=120)
      written.append(f'{base}.{ext}')
    plt.close(fig)
    with open(f'{base}.dot', 'w') as f:
      f.write(cell_dot(edges, concat))
    written.append(f'{base}.dot')
  return written


def draw_alphas(alphas_normal, alphas_reduce, path: str, title: str = '') -> str:
  """Heatmaps of softmax(α) for both cell types (rows: edges `src->node`, columns: ops)."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  steps = {14: 4}.get(np.shape(alphas_normal)[0])
  rows = [f'{_state_name(s)}->{n}' for s, n in edge_endpoints(steps or 4)]
  fig, axes = plt.subplots(1, 2, figsize=(13, 0.32 * len(rows) + 2.2))
  for ax, a, name in zip(axes, (alphas_normal, alphas_reduce), ('normal', 'reduce')):
    w = softmax(np.asarray(a, np.float64))
    im = ax.imshow(w, cmap='viridis', aspect='auto', vmin=0)
    ax.set_xticks(range(len(PRIMITIVES)), PRIMITIVES, rotation=45, ha='right', fontsize=8)
    ax.set_yticks(range(len(rows)), rows[:len(w)], fontsize=8)
    ax.set_title(f'softmax(α) {name}')
    fig.colorbar(im, ax=ax, fraction=0.046)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
