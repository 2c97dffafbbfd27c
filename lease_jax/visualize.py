"""Drawings: cells as DARTS's `visualize.py` draws them, and α heatmaps. Matplotlib, no display.

A cell is drawn left to right: inputs c_{k-2} and c_{k-1} (green), the intermediate nodes
(blue), each edge labelled with its operation, and every intermediate node feeding the output
c_{k} (yellow). Each drawing is written as PNG and SVG, plus the Graphviz source (`.dot`, the
layout of the DARTS figure) for users who have Graphviz.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib
import matplotlib.ticker

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
           '  "c_{k-2}" [fillcolor="darkseagreen2"];', '  "c_{k-1}" [fillcolor="darkseagreen2"];']
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


def draw_cell(ax, edges: Sequence[tuple[str, int]], concat: Sequence[int], title: str,
              weights: Sequence[float] | None = None) -> None:
  """One DARTS cell on `ax`; `weights`: each edge's β weight, printed after its operation."""
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
    label = op if weights is None else f'{op} ({weights[k]:.2f})'
    ax.text(lx, ly, label, fontsize=8, ha='center', va='center', family='serif', color=color,
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


def draw_genotype(genotype: Genotype, out_dir: str, prefix: str = '',
                  formats: Sequence[str] = ('png', 'svg', 'dot'),
                  edge_weights: Mapping[str, Sequence[float]] | None = None) -> list[str]:
  """Writes `{prefix}normal.<format>` and `{prefix}reduction.<format>` for each of `formats`
  (png, svg, dot: the Graphviz source); returns the paths. `edge_weights` ('normal', 'reduce':
  each kept edge's β weight, PC-DARTS) label the drawn edges."""
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for name, kind, edges, concat in (
      ('normal', 'normal', genotype.normal, genotype.normal_concat),
      ('reduction', 'reduce', genotype.reduce, genotype.reduce_concat)):
    width = 3.2 * (len(edges) // 2 + 1)
    fig, ax = plt.subplots(figsize=(width, 5.5))
    draw_cell(ax, edges, concat, f'{name} cell',
              None if edge_weights is None else edge_weights[kind])
    base = os.path.join(out_dir, f'{prefix}{name}')
    for ext in formats:
      if ext == 'dot':
        with open(f'{base}.dot', 'w') as f:
          f.write(cell_dot(edges, concat))
      else:
        fig.savefig(f'{base}.{ext}', bbox_inches='tight', dpi=120)
      written.append(f'{base}.{ext}')
    plt.close(fig)
  return written


def draw_nb201_cell(arch, path: str, edge_weights: Sequence[float] | None = None) -> str:
  """An NB201 cell: nodes 0..3 left to right, each edge labelled with its operation (and its β
  weight, `edge_weights`, where the base has β; `none` edges dotted and grey: they carry
  nothing)."""
  from lease_jax.search_space import NB201_EDGES, NB201_NODES
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  pos = {n: (3.0 * n, 0.0) for n in range(NB201_NODES)}
  fig, ax = plt.subplots(figsize=(10, 3.6))
  colors = plt.get_cmap('tab10')
  for k, ((i, j), op) in enumerate(zip(NB201_EDGES, arch.ops)):
    (x0, y0), (x1, y1) = pos[j], pos[i]
    bend = [0.0, -0.3, -0.5][i - j - 1]  # longer edges arc higher
    none = op == 'none'
    color = '0.7' if none else colors(k % 10)
    ax.annotate('', (x1, y1), (x0, y0), arrowprops=dict(
        arrowstyle='->', color=color, lw=1.2, ls=':' if none else '-', shrinkA=14, shrinkB=14,
        connectionstyle=f'arc3,rad={bend}'))
    dx, dy = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + bend * dy, (y0 + y1) / 2 - bend * dx
    lx, ly = 0.25 * x0 + 0.5 * cx + 0.25 * x1, 0.25 * y0 + 0.5 * cy + 0.25 * y1
    label = op if edge_weights is None else f'{op} ({edge_weights[k]:.2f})'
    ax.text(lx, ly, label, fontsize=8, ha='center', va='center', family='serif', color=color,
            bbox=dict(facecolor='white', edgecolor=color, linewidth=0.6, pad=1.0))
  for n, (x, y) in pos.items():
    color = _GREEN if n == 0 else _YELLOW if n == NB201_NODES - 1 else _BLUE
    ax.text(x, y, str(n), ha='center', va='center', fontsize=12, family='serif',
            bbox=dict(boxstyle='round,pad=0.35', linewidth=1.5, facecolor=color))
  ax.set_xlim(-1, 3.0 * (NB201_NODES - 1) + 1)
  ax.set_ylim(-0.8, 2.8)
  ax.set_title(arch.to_string(), family='monospace', fontsize=8, pad=4)
  ax.axis('off')
  fig.savefig(path, bbox_inches='tight', dpi=120)
  plt.close(fig)
  return path


def darts_edge_labels(steps: int = 4) -> list[str]:
  """Row labels of a DARTS α matrix: `src->node` per edge."""
  return [f'{_state_name(s)}->{n}' for s, n in edge_endpoints(steps)]


def darts_choices(edges: Sequence[tuple[str, int]], steps: int = 4) -> list[tuple[int, int]]:
  """(α row, operation column) of every edge a DARTS genotype keeps."""
  rows = {pair: k for k, pair in enumerate(edge_endpoints(steps))}
  return [(rows[(index, k // 2)], PRIMITIVES.index(op)) for k, (op, index) in enumerate(edges)]


def draw_alphas(alphas: Mapping[str, np.ndarray], path: str, title: str = '', *,
                row_labels: Sequence[str], ops: Sequence[str] = PRIMITIVES,
                chosen: Mapping[str, Sequence[tuple[int, int]]] | None = None,
                edge_weights: Mapping[str, np.ndarray] | None = None) -> str:
  """Heat maps of each α's deviation from uniform, `softmax(α) - 1/|ops|`, per edge and op.

  All entries of softmax(α) sit near 1/|ops| during a search, so the raw weights draw a flat
  square; the deviation, on a symmetric colour scale, shows which operations gain and lose. The
  derived architecture's choices (`chosen`: (row, column) pairs per α) are outlined. With
  `edge_weights` (PC-DARTS's normalised β, per α one weight per row) each row's label ends with
  its edge's weight.
  """
  from matplotlib.patches import Rectangle
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  names = list(alphas)
  weights = {n: softmax(np.asarray(alphas[n], np.float64)) for n in names}
  deviation = {n: w - 1.0 / w.shape[1] for n, w in weights.items()}
  limit = max(max(float(np.abs(d).max()) for d in deviation.values()), 1e-6)
  rows = max(len(d) for d in deviation.values())
  fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 0.32 * rows + 2.4),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    d = deviation[name]
    im = ax.imshow(d, cmap='RdBu_r', aspect='auto', vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(ops)), ops, rotation=45, ha='right', fontsize=8)
    labels = list(row_labels[:len(d)])
    if edge_weights is not None and name in edge_weights:
      labels = [f'{label}  β {w:.3f}' for label, w in zip(labels, edge_weights[name])]
    ax.set_yticks(range(len(d)), labels, fontsize=8)
    for row, col in (chosen or {}).get(name, ()):
      ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor='k', lw=2))
    ax.set_title(f'{name}: softmax(α) − 1/{len(ops)} (max softmax {weights[name].max():.3f})',
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
  if title:
    fig.suptitle(f'{title} (outlined: the derived choice)')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def draw_alpha_trajectory(history: Sequence[Mapping], path: str, *,
                          row_labels: Sequence[str], ops: Sequence[str] = PRIMITIVES,
                          names: Sequence[str] | None = None) -> str:
  """softmax(α) of every edge over the epochs: one panel per edge, one line per operation
  (`names`: the α matrices of the history's A; default all of them)."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  epochs = [entry['epoch'] for entry in history]
  names = list(names or history[0]['alphas'])
  series = {n: np.stack([softmax(np.asarray(e['alphas'][n], np.float64)) for e in history])
            for n in names}  # [epochs, edges, ops]
  edges = max(v.shape[1] for v in series.values())
  cols = len(names)
  height = 1.35 * edges + 1.2
  fig, axes = plt.subplots(edges, cols, figsize=(4.2 * cols, height), sharex=True, squeeze=False)
  colors = plt.get_cmap('tab10')
  for c, name in enumerate(names):
    for r in range(edges):
      ax = axes[r][c]
      if r >= series[name].shape[1]:
        ax.axis('off')
        continue
      for k, op in enumerate(ops):
        ax.plot(epochs, series[name][:, r, k], color=colors(k % 10), lw=1.2, label=op)
      ax.axhline(1 / len(ops), color='0.6', lw=0.6, ls=':')
      ax.set_ylabel(row_labels[r], fontsize=7)
      ax.tick_params(labelsize=6)
      if r == 0:
        ax.set_title(name, fontsize=9)
  axes[-1][0].set_xlabel('epoch')
  axes[-1][0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='upper center', ncol=min(len(ops), 4), fontsize=7)
  # Fixed margins (in inches) rather than `tight_layout`, which draws the 28 panels twice.
  fig.subplots_adjust(left=0.55 / (4.2 * cols), right=1 - 0.1 / (4.2 * cols),
                      bottom=0.45 / height, top=1 - 0.75 / height, hspace=0.25, wspace=0.22)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def draw_explanations(images: np.ndarray, deltas: np.ndarray, inputs: np.ndarray,
                      mean: Sequence[float], std: Sequence[float], path: str,
                      title: str = '') -> str:
  """For a few fixed validation images: the image, δ' (heat map) and the audience's input.

  `images`, `deltas`, `inputs`: [n, H, W, C] in the normalised input space. δ' is drawn as its
  channel mean on a symmetric diverging scale per image (with its range in the caption); the
  audience's input `m(δ') ⊙ x` on its own range per image (min to max: the pattern the audience
  sees; a paper-literal `δ' ⊙ x` is tiny and would be a flat grey in pixel space).
  """
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  mean, std = np.asarray(mean), np.asarray(std)
  pixels = lambda x: np.clip(x * std + mean, 0, 1)
  n = len(images)
  fig, axes = plt.subplots(3, n, figsize=(1.9 * n, 6.2), squeeze=False)
  for i in range(n):
    image, delta, seen = pixels(images[i]), deltas[i].mean(-1), inputs[i]
    seen = (seen - seen.min()) / max(float(seen.max() - seen.min()), 1e-12)
    show = lambda a: a[..., 0] if a.shape[-1] == 1 else a
    cmap = 'gray' if images.shape[-1] == 1 else None
    axes[0][i].imshow(show(image), cmap=cmap, vmin=0, vmax=1)
    limit = max(float(np.abs(delta).max()), 1e-12)
    axes[1][i].imshow(delta, cmap='RdBu_r', vmin=-limit, vmax=limit)
    axes[1][i].set_xlabel(f'±{limit:.2g}', fontsize=7)
    axes[2][i].imshow(show(seen), cmap=cmap, vmin=0, vmax=1)
    for r in range(3):
      axes[r][i].set_xticks([])
      axes[r][i].set_yticks([])
  for r, label in enumerate(('image x', "explanation δ'", 'audience input\n(own range)')):
    axes[r][0].set_ylabel(label, fontsize=9)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def draw_history(history: Sequence[Mapping], path: str, title: str = '') -> str:
  """Per epoch: explainer and audience train / val accuracy, and |∇_A| split by term."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  epochs = [e['epoch'] for e in history]
  get = lambda key: [e['metrics'].get(key, np.nan) for e in history]
  fig, (acc, grad) = plt.subplots(1, 2, figsize=(11, 4))
  for key, style in (('explainer_train_acc', 'C0--'), ('explainer_val_acc', 'C0-'),
                     ('audience_train_acc', 'C1--'), ('audience_val_acc', 'C1-')):
    if not np.all(np.isnan(get(key))):
      acc.plot(epochs, get(key), style, marker='o', ms=3, label=key.replace('_', ' '))
  acc.set_xlabel('epoch')
  acc.set_ylabel('accuracy')
  acc.set_ylim(0, 1)
  acc.legend(fontsize=8)
  for key, style in (('alpha_grad_norm', 'k-'), ('alpha_grad_norm_explainer', 'C0-'),
                     ('alpha_grad_norm_audience', 'C1-')):
    if not np.all(np.isnan(get(key))):
      grad.plot(epochs, get(key), style, marker='o', ms=3,
                label={'alpha_grad_norm': '|∇A| total'}.get(key, '|∇A| ' + key.split('_')[-1]
                                                             + ' term'))
  grad.set_xlabel('epoch')
  grad.set_yscale('log')
  grad.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
