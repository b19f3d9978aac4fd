"""The four Faster R-CNN losses (Ren et al. 2015), with torchvision's names and normalisation.

From the outputs of `jaxvision.models.faster_rcnn.FasterRCNN` called with targets (sampled
anchors and RoIs with their labels and regression targets):

- `loss_objectness`: binary cross-entropy of the RPN's objectness logits on the sampled anchors
  (label 1 positive, 0 negative), averaged over the sampled anchors of the batch;
- `loss_rpn_box_reg`: smooth L1 of the RPN deltas on the positive anchors, summed and divided by
  the number of sampled anchors;
- `loss_classifier`: softmax cross-entropy over background + K classes on the sampled RoIs,
  averaged over them;
- `loss_box_reg`: smooth L1 of the deltas of each foreground RoI's true class, summed and
  divided by the number of sampled RoIs.

Labels -1 mark unused anchors and padding RoIs. Every term is zero for perfect predictions
(the cross-entropies in the limit of infinite logits).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")


def smooth_l1(x, beta: float = 1.0):
  """Elementwise smooth L1 (torch.nn.functional.smooth_l1_loss): 0.5 x^2 / beta where
  |x| < beta, |x| - 0.5 beta elsewhere; beta 0 is the L1 loss."""
  a = jnp.abs(x)
  if beta <= 0:
    return a
  return jnp.where(a < beta, 0.5 * jnp.square(x) / beta, a - 0.5 * beta)


def rpn_losses(objectness, deltas, labels, targets, *, beta: float = 1 / 9) -> dict:
  """RPN losses of objectness logits [..., M] and deltas [..., M, 4] against anchor labels
  [..., M] (1, 0, -1 unused) and regression targets [..., M, 4]."""
  sampled = labels >= 0
  positive = labels == 1
  count = jnp.maximum(jnp.sum(sampled), 1)
  bce = optax.sigmoid_binary_cross_entropy(objectness, positive.astype(objectness.dtype))
  box = jnp.sum(smooth_l1(deltas - targets, beta), -1)
  return {"loss_objectness": jnp.sum(jnp.where(sampled, bce, 0.0)) / count,
          "loss_rpn_box_reg": jnp.sum(jnp.where(positive, box, 0.0)) / count}


def roi_losses(logits, deltas, labels, targets, *, beta: float = 1 / 9) -> dict:
  """Fast R-CNN losses of class logits [..., R, K + 1] and class-specific deltas
  [..., R, K + 1, 4] against RoI labels [..., R] (class + 1, 0 background, -1 padding) and
  regression targets [..., R, 4]; also "accuracy", the classification accuracy over the RoIs."""
  used = labels >= 0
  fg = labels > 0
  safe = jnp.maximum(labels, 0)
  count = jnp.maximum(jnp.sum(used), 1)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
  own = jnp.take_along_axis(deltas, safe[..., None, None], axis=-2)[..., 0, :]
  box = jnp.sum(smooth_l1(own - targets, beta), -1)
  correct = (jnp.argmax(logits, -1) == labels) & used
  return {"loss_classifier": jnp.sum(jnp.where(used, ce, 0.0)) / count,
          "loss_box_reg": jnp.sum(jnp.where(fg, box, 0.0)) / count,
          "accuracy": jnp.sum(correct) / count}


def rcnn_losses(outputs: dict, *, rpn_beta: float = 1 / 9, box_beta: float = 1 / 9):
  """The model's losses from its outputs: (total, {each loss term, "accuracy"}). Without an
  RPN (Fast R-CNN) only the two head losses."""
  if "roi" not in outputs:
    raise ValueError(f"outputs: expected the model's training outputs (call it with targets), got "
                     f"keys {sorted(outputs)}")
  terms = {}
  if "rpn" in outputs:
    r = outputs["rpn"]
    terms.update(rpn_losses(r["objectness"], r["deltas"], r["labels"], r["targets"],
                            beta=rpn_beta))
  r = outputs["roi"]
  terms.update(roi_losses(r["logits"], r["deltas"], r["labels"], r["targets"], beta=box_beta))
  total = sum(v for k, v in terms.items() if k in NAMES)
  return total, terms


def per_image_losses(outputs: dict, **kw):
  """`rcnn_losses` of each image separately: (total [B], terms {name: [B]})."""
  parts = {k: outputs[k] for k in ("rpn", "roi") if k in outputs}
  return jax.vmap(lambda o: rcnn_losses(jax.tree.map(lambda v: v[None], o), **kw))(parts)
