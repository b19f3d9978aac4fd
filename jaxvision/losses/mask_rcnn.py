"""The Mask R-CNN loss (He et al. 2017): the four Faster R-CNN losses (`jaxvision.losses.rcnn`)
plus `loss_mask`, the mean per-pixel binary cross-entropy of each positive RoI's mask logits of
its true class against its 28 x 28 target (the other classes' masks get no gradient), averaged
over the pixels of the positive RoIs of the batch (zero when there are none).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxvision.losses.rcnn import rcnn_losses


def mask_loss(logits, classes, targets, valid):
  """Mean BCE of the true class's mask logits.

  Args:
    logits: [..., P, M, M, K] per-class mask logits.
    classes: [..., P] the true class (0..K-1) of each RoI.
    targets: [..., P, M, M] 0/1 targets.
    valid: [..., P] the positive RoIs (the rest are ignored).
  """
  if (logits.shape[:-1] != targets.shape or classes.shape != valid.shape
      or valid.shape != targets.shape[:-2]):
    raise ValueError(f"logits, classes, targets, valid: expected [..., P, M, M, K], [..., P], "
                     f"[..., P, M, M], [..., P], got {logits.shape}, {classes.shape}, "
                     f"{targets.shape}, {valid.shape}")
  own = jnp.take_along_axis(logits, classes[..., None, None, None].astype(jnp.int32), axis=-1)
  bce = optax.sigmoid_binary_cross_entropy(own[..., 0], targets.astype(own.dtype))
  pixels = jnp.maximum(jnp.sum(valid) * targets.shape[-1] * targets.shape[-2], 1)
  return jnp.sum(jnp.where(valid[..., None, None], bce, 0.0)) / pixels


def mask_rcnn_losses(outputs: dict, **kw):
  """(total, terms): `rcnn_losses` (keywords rpn_beta, box_beta) plus `loss_mask`."""
  if "mask" not in outputs:
    raise ValueError(f"outputs: expected Mask R-CNN's training outputs with 'mask' (call it with "
                     f"targets including 'masks'), got keys {sorted(outputs)}")
  total, terms = rcnn_losses(outputs, **kw)
  m = outputs["mask"]
  terms["loss_mask"] = mask_loss(m["logits"], m["classes"], m["targets"], m["valid"])
  return total + terms["loss_mask"], terms


def per_image_mask_rcnn_losses(outputs: dict, **kw):
  """`mask_rcnn_losses` of each image separately: (total [B], terms {name: [B]})."""
  parts = {k: outputs[k] for k in ("rpn", "roi", "mask") if k in outputs}
  return jax.vmap(lambda o: mask_rcnn_losses(jax.tree.map(lambda v: v[None], o), **kw))(parts)
