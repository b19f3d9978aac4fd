"""Per-pixel losses for semantic segmentation; label 255 marks pixels to ignore."""

from __future__ import annotations

import jax.numpy as jnp
import optax

IGNORE_LABEL = 255


def valid_pixels(mask, weights=None):
  """Float [B, H, W]: 1 where `mask` holds a label (not IGNORE_LABEL) in a row of nonzero weight."""
  valid = (mask != IGNORE_LABEL).astype(jnp.float32)
  if weights is not None:
    valid = valid * (weights > 0).astype(jnp.float32)[:, None, None]
  return valid


def pixel_cross_entropy_sum(logits, mask, weights=None):
  """(sum of softmax cross-entropy over the valid pixels, number of valid pixels).

  Args:
    logits: [B, H, W, K].
    mask: int [B, H, W] labels in [0, K) or IGNORE_LABEL.
    weights: optional [B]; rows of weight 0 (eval padding) are left out.
  """
  valid = valid_pixels(mask, weights)
  labels = jnp.where(valid > 0, mask, 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return jnp.sum(losses * valid), jnp.sum(valid)


def pixel_cross_entropy(logits, mask, weights=None):
  """Mean softmax cross-entropy over the pixels whose label is not IGNORE_LABEL."""
  total, count = pixel_cross_entropy_sum(logits, mask, weights)
  return total / jnp.maximum(count, 1.0)
