"""Multi-label classification: image-level targets and per-class sigmoid cross-entropy.

A multi-label image carries a multi-hot target vector y in {0, 1}^K (class k present or not)
instead of one class id; the model's K logits are K independent binary classifiers. The loss is
the per-class sigmoid (binary) cross-entropy
    l(z, y) = -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z)) = max(z, 0) - z y + log(1 + e^-|z|),
averaged over classes and images, as `optax.sigmoid_binary_cross_entropy(...).mean()` (the
softmax counterpart is `jaxvision.losses.cross_entropy`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax


def multi_hot(classes, valid, num_classes: int):
  """Image-level targets float32 [..., K] from padded object classes [..., N] and `valid`
  [..., N]: 1 where at least one valid object has that class. numpy or jax arrays (jit-able)."""
  hits = (classes[..., None] == np.arange(num_classes)) & valid[..., None]
  return hits.any(axis=-2).astype(np.float32)


def sigmoid_cross_entropy(logits, labels, *, weights=None):
  """Mean per-class sigmoid cross-entropy of multi-hot `labels` [B, K] (floats in [0, 1]).

  The mean is over classes and examples (optax's elementwise loss, `.mean()`); `weights` [B]
  (e.g. 0 for padded evaluation rows) weight each example, and the mean is then over the
  total weight times K.
  """
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels, jnp.float32)
  if logits.shape != labels.shape:
    raise ValueError(f"labels: expected the logits' shape {tuple(logits.shape)}, got "
                     f"{tuple(labels.shape)}")
  per_class = optax.sigmoid_binary_cross_entropy(logits, labels)
  if weights is None:
    return per_class.mean()
  per_example = per_class.mean(axis=-1)
  return (per_example * weights).sum() / jnp.maximum(weights.sum(), 1e-12)
