"""Matching and sampling of training examples for detectors (torchvision's `Matcher`,
`BalancedPositiveNegativeSampler` and target encoding), one image at a time, at fixed shapes:
pure jnp, jit- and vmap-able."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.ops.box_coder import encode_boxes
from jaxvision.ops.boxes import box_iou


def match(boxes, gt_boxes, gt_valid):
  """Best true box of each of `boxes` [M, 4]: (its index [M], its IoU [M], IoU matrix [M, N]);
  IoU -1 with padding boxes, so an image without boxes gives IoU -1 everywhere."""
  if gt_boxes.shape[0] == 0:
    m = boxes.shape[0]
    return jnp.zeros((m,), jnp.int32), jnp.full((m,), -1.0), jnp.zeros((m, 0))
  overlaps = jnp.where(gt_valid[None], jnp.nan_to_num(box_iou(boxes, gt_boxes)), -1.0)
  return jnp.argmax(overlaps, 1).astype(jnp.int32), jnp.max(overlaps, 1), overlaps


def random_rank(key, mask):
  """A random order of the True entries of `mask` [M]: each entry's rank (True ones first)."""
  priority = jnp.where(mask, jax.random.uniform(key, mask.shape), 2.0)
  order = jnp.argsort(priority)
  return jnp.zeros(mask.shape, jnp.int32).at[order].set(jnp.arange(mask.shape[0], dtype=jnp.int32))


def sample_balanced(key, positive, negative, num_samples: int, positive_fraction: float):
  """torchvision's BalancedPositiveNegativeSampler on masks [M]: min(#positive,
  int(num_samples * positive_fraction)) positives and up to num_samples in all with negatives,
  each drawn uniformly without replacement. Returns (positive, negative) masks [M]."""
  pos_key, neg_key = jax.random.split(key)
  num_pos = jnp.minimum(jnp.sum(positive), int(num_samples * positive_fraction))
  num_neg = jnp.minimum(jnp.sum(negative), num_samples - num_pos)
  return (positive & (random_rank(pos_key, positive) < num_pos),
          negative & (random_rank(neg_key, negative) < num_neg))


def regression_targets(gt_boxes, index, reference, positive, weights):
  """Deltas [M, 4] encoding each positive `reference` box [M, 4] onto its matched true box
  `gt_boxes[index]`; zero elsewhere (and everywhere when there are no true boxes)."""
  if gt_boxes.shape[0] == 0:
    return jnp.zeros(reference.shape)
  safe = jnp.where(positive[:, None], reference, jnp.array([0.0, 0.0, 1.0, 1.0]))
  return jnp.where(positive[:, None], encode_boxes(gt_boxes[index], safe, weights), 0.0)


def large_enough(boxes, min_size: float):
  """Mask [...] of the (x1, y1, x2, y2) boxes [..., 4] at least `min_size` wide and high."""
  width, height = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
  return (width >= min_size) & (height >= min_size)
