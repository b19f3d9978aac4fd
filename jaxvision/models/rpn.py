"""The Region Proposal Network of Faster R-CNN (Ren et al. 2015), as torchvision's `rpn`.

A 3x3 conv + ReLU on one feature map, then per position and anchor an objectness logit and box
deltas (1x1 convs, `RPNHead`). Training: anchor labels and regression targets (`rpn_targets`:
256 anchors per image at up to 1:1 positives to negatives). Proposals (`select_proposals`): the
`pre_nms_top_n` best anchors, decoded, clipped to the image, tiny boxes dropped, NMS, the best
`post_nms_top_n` kept, at fixed sizes (a `valid` mask).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.ops.box_coder import decode_boxes
from jaxvision.ops.boxes import clip_xyxy
from jaxvision.ops.nms import nms
from jaxvision.ops.sampling import large_enough, match, regression_targets, sample_balanced

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


class RPNHead(nn.Module):
  """3x3 conv + ReLU, then A objectness logits and 4A deltas per position (normal(0.01) init).
  Returns (logits [B, h * w * A], deltas [B, h * w * A, 4]), float32."""
  num_anchors: int
  width: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, kernel_init=nn.initializers.normal(0.01), dtype=self.dtype)
    y = nn.relu(conv(self.width or x.shape[-1], (3, 3), padding=1, name="conv")(x))
    logits = conv(self.num_anchors, (1, 1), name="cls_logits")(y)
    deltas = conv(4 * self.num_anchors, (1, 1), name="bbox_pred")(y)
    b = x.shape[0]
    return logits.reshape(b, -1).astype(jnp.float32), deltas.reshape(b, -1, 4).astype(jnp.float32)


def rpn_targets(key, anchors, gt_boxes, gt_valid, *, fg_iou: float = 0.7, bg_iou: float = 0.3,
                num_samples: int = 256, positive_fraction: float = 0.5, weights=RPN_WEIGHTS):
  """Anchor labels [M] (1 sampled positive, 0 sampled negative, -1 unused) and regression
  targets [M, 4] (zero except for positives). Positives: IoU >= fg_iou with some box, or the
  anchors of highest (non-zero) IoU for a box (ties included); negatives: IoU < bg_iou."""
  index, best, overlaps = match(anchors, gt_boxes, gt_valid)
  positive = best >= fg_iou
  if gt_boxes.shape[0]:
    best_per_box = jnp.max(overlaps, 0)
    low_quality = (overlaps == best_per_box[None]) & (best_per_box > 0)[None] & gt_valid[None]
    positive |= jnp.any(low_quality, 1)
  negative = (best < bg_iou) & ~positive
  pos, neg = sample_balanced(key, positive, negative, num_samples, positive_fraction)
  labels = jnp.where(pos, 1, jnp.where(neg, 0, -1)).astype(jnp.int32)
  return labels, regression_targets(gt_boxes, index, anchors, pos, weights)


def select_proposals(logits, deltas, anchors, image_hw, *, pre_nms_top_n: int,
                     post_nms_top_n: int, nms_threshold: float = 0.7, min_size: float = 1e-3,
                     weights=RPN_WEIGHTS):
  """One image's proposals from RPN outputs (logits [M], deltas [M, 4]) for `anchors` [M, 4]:
  top-k by objectness, decode, clip, drop boxes smaller than `min_size`, NMS, top-n.
  Returns (boxes [post_nms_top_n, 4], objectness logits, valid), padding rows zero."""
  k = min(pre_nms_top_n, logits.shape[0])
  scores, top = jax.lax.top_k(logits, k)
  boxes = clip_xyxy(decode_boxes(deltas[top], anchors[top], weights), *image_hw)
  scores = jnp.where(large_enough(boxes, min_size), scores, -jnp.inf)
  keep, valid = nms(boxes, scores, nms_threshold, post_nms_top_n, score_threshold=-jnp.inf)
  return (jnp.where(valid[:, None], boxes[keep], 0.0), jnp.where(valid, scores[keep], 0.0),
          valid)


def rpn_targets_batch(module: nn.Module, keys, anchors, gt: dict):
  """`rpn_targets` over a batch with the module's `rpn_*` sampling settings: labels, targets."""
  return jax.vmap(functools.partial(
      rpn_targets, fg_iou=module.rpn_fg_iou, bg_iou=module.rpn_bg_iou,
      num_samples=module.rpn_batch_size, positive_fraction=module.rpn_positive_fraction),
      in_axes=(0, None, 0, 0))(keys, anchors, gt["boxes"], gt["valid"])


def select_proposals_batch(module: nn.Module, logits, deltas, anchors, image_hw, train: bool):
  """`select_proposals` over a batch (without gradient) with the module's `rpn_*` settings for
  training or evaluation: boxes, scores, valid."""
  top_n = ((module.rpn_pre_nms_top_n_train, module.rpn_post_nms_top_n_train) if train else
           (module.rpn_pre_nms_top_n_test, module.rpn_post_nms_top_n_test))
  select = functools.partial(select_proposals, image_hw=image_hw, pre_nms_top_n=top_n[0],
                             post_nms_top_n=top_n[1], nms_threshold=module.rpn_nms_threshold,
                             min_size=module.rpn_min_size)
  return jax.vmap(select, in_axes=(0, 0, None))(
      jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas), anchors)
