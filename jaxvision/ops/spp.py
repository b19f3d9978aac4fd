"""Spatial pyramid pooling of image windows on a feature map (He et al. 2014, SPP-net).

A window (x1, y1, x2, y2) in image pixels is projected onto the feature map of stride
S = 1 / `spatial_scale` with the paper's corner mapping (appendix A): the left/top edge to cell
floor(x1 / S) + 1, the right/bottom edge to cell ceil(x2 / S) - 1 (inclusive), i.e. the cells
whose receptive-field centres lie inside the window for a network padded by floor(k / 2) at
every layer. Handling at the edges (documented, no error): a window that covers no cell centre
(narrower than about S) maps to the one cell nearest its centre, floor(c / S + 1 / 2); cells
are clipped to the map, so a window larger than the image pools the whole map.

Each pyramid level of n x n bins max-pools the window's cells a (inclusive count) into bins with
the floor/ceil edges of the SPP-net and Fast R-CNN code (and `jaxvision.ops.roi_pool`): bin i
covers cells [floor(i a / n), ceil((i + 1) a / n)) from the window's first cell, never empty;
bins of a window smaller than n cells repeat cells. The levels' n x n x C outputs are flattened
(row-major bins, channels last) and concatenated, in the order given.

The maxima come from a 2-D sparse table (the range-maximum query): the max of every
2^i x 2^j block of the map, computed once per image (B x log H x H x log W x W x C values);
any bin is then the max of four overlapping blocks, so the cost per window is a few gathers,
independent of the map's size, which is the point of SPP-net (the convolutions and the
pooling's preparation run once per image, not once per window). The bin edges are integer
arithmetic (roi_pool's float32 edges can round a ceil up by one cell: 11 * (29 / 11) > 29); the
gradient reaches each bin's maximum (split among exact ties).
"""

from __future__ import annotations

import operator
from typing import Sequence

import jax
import jax.numpy as jnp


def _check_levels(levels) -> tuple[int, ...]:
  try:
    out = tuple(operator.index(n) for n in levels)
  except TypeError:
    out = ()
  if not out or min(out) < 1:
    raise ValueError(f"levels: expected a non-empty sequence of positive ints (bins per side), "
                     f"got {levels!r}")
  return out


def project_windows(boxes, spatial_scale: float, feature_hw):
  """Inclusive feature-map cells (c1, r1, c2, r2) [..., 4] float32 of pixel windows `boxes`
  [..., 4] (see the module doc for the mapping)."""
  if not spatial_scale > 0:
    raise ValueError(f"spatial_scale: expected a positive float (1 / stride), got "
                     f"{spatial_scale!r}")
  boxes = jnp.asarray(boxes, jnp.float32)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes: expected (x1, y1, x2, y2) windows [..., 4], got shape "
                     f"{tuple(boxes.shape)}")
  scaled = boxes * spatial_scale
  lo = jnp.floor(scaled[..., :2]) + 1
  hi = jnp.ceil(scaled[..., 2:]) - 1
  centre = jnp.floor((scaled[..., :2] + scaled[..., 2:]) / 2 + 0.5)
  empty = hi < lo
  lo, hi = jnp.where(empty, centre, lo), jnp.where(empty, centre, hi)
  limit = jnp.asarray([feature_hw[1] - 1, feature_hw[0] - 1], jnp.float32)
  lo, hi = jnp.clip(lo, 0, limit), jnp.clip(hi, 0, limit)
  return jnp.concatenate([lo, hi], -1)


def _block_max_table(features):
  """T[b, i, y, j, x, c] = max of features[b, y : y + 2^i, x : x + 2^j, c] (cut at the map's
  end), for 2^i <= H and 2^j <= W."""

  def levels(x, axis: int):
    size, out = x.shape[axis], [x]
    step = 1
    while 2 * step <= size:
      prev = out[-1]
      ahead = jnp.concatenate([jax.lax.slice_in_dim(prev, step, size, axis=axis),
                               jax.lax.slice_in_dim(prev, size - step, size, axis=axis)], axis)
      out.append(jnp.maximum(prev, ahead))
      step *= 2
    return jnp.stack(out, axis)

  rows = levels(features, 1)  # [B, I, H, W, C]
  return levels(rows, 3)  # [B, I, H, J, W, C]


def _bin_edges(first, last, n: int):
  """Inclusive cells (lo, hi) [B, K, n] of n floor/ceil bins over cells first..last [B, K]."""
  a = (last - first + 1)[..., None]
  p = jnp.arange(n)
  lo = first[..., None] + (p * a) // n
  hi = first[..., None] + -((-(p + 1) * a) // n) - 1  # ceil((p + 1) a / n) - 1
  return lo, hi


def _log2_floor(length):
  return jnp.floor(jnp.log2(length.astype(jnp.float32))).astype(jnp.int32)


def spatial_pyramid_pool(features, boxes, levels: Sequence[int] = (1, 2, 4),
                         spatial_scale: float = 1.0):
  """SPP of windows on feature maps (see the module doc).

  Args:
    features: [B, H, W, C].
    boxes: [B, K, 4] pixel (x1, y1, x2, y2) windows of each image.
    levels: bins per side of each pyramid level, e.g. (1, 2, 4) (the paper used (1, 2, 3, 6)).
    spatial_scale: 1 / the feature map's stride.

  Returns:
    [B, K, C * sum(n * n for n in levels)] in the features' dtype.
  """
  levels = _check_levels(levels)
  features = jnp.asarray(features)
  if features.ndim != 4:
    raise ValueError(f"features: expected NHWC feature maps [B, H, W, C], got shape "
                     f"{tuple(features.shape)}")
  cells = project_windows(boxes, spatial_scale, features.shape[1:3])
  if cells.ndim != 3 or cells.shape[0] != features.shape[0]:
    raise ValueError(f"boxes: expected windows [{features.shape[0]}, K, 4] (K per image), got "
                     f"shape {tuple(jnp.shape(boxes))}")
  table = _block_max_table(features)
  cells = cells.astype(jnp.int32)
  b, k = cells.shape[:2]
  batch = jnp.arange(b)[:, None, None, None]
  out = []
  for n in levels:
    y_lo, y_hi = _bin_edges(cells[..., 1], cells[..., 3], n)
    x_lo, x_hi = _bin_edges(cells[..., 0], cells[..., 2], n)
    i, j = _log2_floor(y_hi - y_lo + 1), _log2_floor(x_hi - x_lo + 1)
    y_end, x_end = y_hi - (1 << i) + 1, x_hi - (1 << j) + 1  # the second block of each side
    rows = lambda y: (y[..., :, None], i[..., :, None])  # bins [B, K, n (rows), n (cols)]
    cols = lambda x: (x[..., None, :], j[..., None, :])
    pooled = None
    for y, iy in (rows(y_lo), rows(y_end)):
      for x, jx in (cols(x_lo), cols(x_end)):
        block = table[batch, iy, y, jx, x]  # [B, K, n, n, C]
        pooled = block if pooled is None else jnp.maximum(pooled, block)
    out.append(pooled.reshape(b, k, -1))
  return jnp.concatenate(out, axis=-1)
