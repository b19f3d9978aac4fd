"""YOLOv2's anchor priors: k-means over training box shapes with the distance 1 - IoU.

Redmon & Farhadi 2017, section "Dimension Clusters": boxes are compared by shape only (as if
they shared a centre), so that large boxes do not dominate as they would with the Euclidean
distance; with k = 5 on VOC the priors reach an average best IoU of 61.0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
