"""Anchors: YOLOv2's k-means priors (distance 1 - IoU) and Faster R-CNN's anchor grids.

Redmon & Farhadi 2017, section "Dimension Clusters": boxes are compared by shape only (as if
they shared a centre), so that large boxes do not dominate as they would with the Euclidean
distance; with k = 5 on VOC the priors reach an average best IoU of 61.0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def shape_iou(wh, centroids):
  """IoU of box shapes `wh` [N, 2] with `centroids` [K, 2], centres aligned -> [N, K]."""
  inter = jnp.prod(jnp.minimum(wh[:, None, :], centroids[None]), -1)
  return inter / (jnp.prod(wh, -1)[:, None] + jnp.prod(centroids, -1)[None] - inter)


def kmeans_anchors(wh, k: int, *, iterations: int = 100, seed: int = 0):
  """k-means with d = 1 - IoU of `wh` [N, 2] (box widths and heights, e.g. image fractions).

  Initialised with k distinct boxes drawn at random (`seed`); each iteration assigns every box
  to its nearest centroid and moves the centroids to their clusters' means (an empty cluster
  keeps its centroid).

  Returns:
    (anchors [k, 2] sorted by area, mean over boxes of the best IoU with an anchor).
  """
  wh = jnp.asarray(wh, jnp.float32)
  if wh.ndim != 2 or wh.shape[1] != 2:
    raise ValueError(f"wh: expected box sizes [N, 2], got shape {tuple(wh.shape)}")
  if not 1 <= k <= wh.shape[0]:
    raise ValueError(f"k: expected 1 <= k <= {wh.shape[0]} (the number of boxes), got {k}")
  if bool(jnp.any(wh <= 0)):
    raise ValueError("wh: expected positive widths and heights")
  start = wh[jax.random.choice(jax.random.key(seed), wh.shape[0], (k,), replace=False)]

  def step(_, centroids):
    nearest = jnp.argmax(shape_iou(wh, centroids), -1)
    member = jax.nn.one_hot(nearest, k, dtype=jnp.float32)  # [N, K]
    count = member.sum(0)
    means = member.T @ wh / jnp.maximum(count, 1.0)[:, None]
    return jnp.where(count[:, None] > 0, means, centroids)

  centroids = jax.lax.fori_loop(0, iterations, step, start)
  centroids = centroids[jnp.argsort(jnp.prod(centroids, -1))]
  return centroids, jnp.mean(jnp.max(shape_iou(wh, centroids), -1))


# Faster R-CNN's anchors (Ren et al. 2015; the layout of torchvision's AnchorGenerator).


def cell_anchors(sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0)):
  """The A = len(aspect_ratios) * len(sizes) anchors of one position, centred on (0, 0):
  float32 [A, 4] (x1, y1, x2, y2), ratio-major. An anchor of size s and ratio r = h / w has
  w = s / sqrt(r), h = s sqrt(r) (area s^2); corners are rounded to integers (half to even),
  as torchvision does."""
  sizes = np.asarray(sizes, np.float32).reshape(-1)
  ratios = np.asarray(aspect_ratios, np.float32).reshape(-1)
  if sizes.size == 0 or ratios.size == 0 or (sizes <= 0).any() or (ratios <= 0).any():
    raise ValueError(f"sizes, aspect_ratios: expected non-empty positive values, got "
                     f"{tuple(sizes.tolist())}, {tuple(ratios.tolist())}")
  h_ratios = np.sqrt(ratios)
  ws = (1 / h_ratios[:, None] * sizes[None, :]).reshape(-1)
  hs = (h_ratios[:, None] * sizes[None, :]).reshape(-1)
  return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2).astype(np.float32)


def grid_anchors(grid_shape, stride, sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0),
                 offset: float = 0.0):
  """Anchors at every position of a feature map: float32 [h * w * A, 4] (x1, y1, x2, y2) in
  image pixels, position-major (row, column, then anchor; the layout of an RPN head's outputs
  reshaped from [h, w, A]).

  The anchors of cell (i, j) are centred on ((j + offset) * stride_x, (i + offset) * stride_y);
  offset 0 is torchvision's (centres on the cells' top-left corners), 0.5 the cells' centres.
  `stride` is an int or (stride_y, stride_x) in pixels; the default sizes and ratios are the
  paper's 3 x 3.
  """
  h, w = (int(v) for v in grid_shape)
  sy, sx = (stride, stride) if np.isscalar(stride) else stride
  if h < 1 or w < 1 or sy <= 0 or sx <= 0:
    raise ValueError(f"grid_shape, stride: expected a positive grid and stride, got "
                     f"{tuple(grid_shape)}, {stride!r}")
  ys = (np.arange(h, dtype=np.float32) + offset) * np.float32(sy)
  xs = (np.arange(w, dtype=np.float32) + offset) * np.float32(sx)
  y, x = np.meshgrid(ys, xs, indexing="ij")
  shifts = np.stack([x, y, x, y], axis=-1).reshape(-1, 1, 4)
  return (shifts + cell_anchors(sizes, aspect_ratios)[None]).reshape(-1, 4).astype(np.float32)
