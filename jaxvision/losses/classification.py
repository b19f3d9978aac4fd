"""Classification losses and weight penalties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits, labels, *, label_smoothing: float = 0.0, weights=None):
  """Mean softmax cross-entropy of integer `labels` with optional label smoothing.

  `weights` [B] (e.g. 0 for padded evaluation rows) weight each example; the mean is over
  the total weight.
  """
  num_classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  losses = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
  if weights is None:
    return losses.mean()
  return (losses * weights).sum() / jnp.maximum(weights.sum(), 1e-12)


def is_kernel(path, leaf) -> bool:
  """Weights that penalties apply to: convolution and dense kernels (not biases or BN scales),
  told by name: in a scanned stage a BatchNorm scale is stacked to [blocks, C], so rank says
  nothing."""
  del leaf
  return bool(path) and getattr(path[-1], "key", None) == "kernel"


def l1_penalty(params) -> jax.Array:
  """Sum of |w| over the kernels of `params`."""
  leaves = [jnp.abs(w).sum() for p, w in jax.tree_util.tree_leaves_with_path(params) if is_kernel(p, w)]
  return sum(leaves, jnp.zeros((), jnp.float32))


def kernel_mask(params):
  """A pytree of bools marking the kernels, for optax masks (weight decay)."""
  return jax.tree_util.tree_map_with_path(is_kernel, params)
