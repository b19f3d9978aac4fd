"""The Fast R-CNN box head (Girshick 2015) and its training and detection steps, as torchvision's
`roi_heads`, shared by Faster R-CNN, Fast R-CNN, R-CNN and SPP-net.

- `BoxHead`: pooled region features -> two fully connected layers of `representation_size`
  ("fc6", "fc7") -> class scores over background + `num_classes` ("cls_score") and
  class-specific box deltas ("bbox_pred", weights 10, 10, 5, 5).
- `sample_rois`: training RoIs per image (the proposals plus the true boxes) at up to 1:3
  foreground (IoU >= 0.5) to background (IoU in [`roi_bg_iou_low`, 0.5)), with their labels
  and regression targets; the "sampling" rng draws them (in evaluation, a fixed key).
- `postprocess`: softmax, decode, clip, NMS per class, the best `max_detections`.
- `RoIDetector`: the backbone and these options, declared once for every detector with this
  head, with the batch wrappers and the option checks.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.ops.box_coder import decode_boxes
from jaxvision.ops.boxes import clip_xyxy, yxyx_to_xyxy
from jaxvision.ops.nms import batched_nms
from jaxvision.ops.sampling import large_enough, match, regression_targets, sample_balanced

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
SAMPLING_RNG = "sampling"


class BoxHead(nn.Module):
  """Pooled RoIs [B, R, h, w, C] -> two ReLU fully connected layers -> (class logits
  [B, R, K + 1], class-specific deltas [B, R, K + 1, 4]), float32."""
  num_classes: int
  representation_size: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.reshape(*x.shape[:2], -1)
    x = nn.relu(nn.Dense(self.representation_size, dtype=self.dtype, name="fc6")(x))
    x = nn.relu(nn.Dense(self.representation_size, dtype=self.dtype, name="fc7")(x))
    k = self.num_classes + 1
    logits = nn.Dense(k, kernel_init=nn.initializers.normal(0.01), dtype=self.dtype,
                      name="cls_score")(x)
    deltas = nn.Dense(4 * k, kernel_init=nn.initializers.normal(0.001), dtype=self.dtype,
                      name="bbox_pred")(x)
    return (logits.astype(jnp.float32),
            deltas.reshape(*deltas.shape[:-1], k, 4).astype(jnp.float32))


def sample_rois(key, proposals, proposal_valid, gt_boxes, gt_classes, gt_valid, *,
                num_samples: int = 512, positive_fraction: float = 0.25, fg_iou: float = 0.5,
                bg_iou: float = 0.5, bg_iou_low: float = 0.0, weights=BOX_WEIGHTS):
  """Fast R-CNN training RoIs from the proposals [P, 4] and the true boxes [N, 4] (added as
  proposals): foreground IoU >= fg_iou, background IoU in [bg_iou_low, bg_iou).

  Returns (rois [R, 4], labels [R] (class + 1, 0 background, -1 padding), regression targets
  [R, 4] (zero but for foreground)), R = num_samples, sampled RoIs first in candidate order.
  """
  candidates = jnp.concatenate([proposals, gt_boxes.astype(proposals.dtype)])
  valid = jnp.concatenate([proposal_valid, gt_valid])
  index, best, _ = match(candidates, gt_boxes, gt_valid)
  positive = valid & (best >= fg_iou)
  negative = valid & (best < bg_iou) & (best >= bg_iou_low if bg_iou_low > 0 else True)
  pos, neg = sample_balanced(key, positive, negative, num_samples, positive_fraction)
  chosen = pos | neg
  (picked,) = jnp.nonzero(chosen, size=num_samples, fill_value=0)
  used = jnp.arange(num_samples) < jnp.sum(chosen)
  rois = jnp.where(used[:, None], candidates[picked], 0.0)
  fg = used & pos[picked]
  classes = gt_classes[index[picked]].astype(jnp.int32) + 1 if gt_boxes.shape[0] else 0
  labels = jnp.where(fg, classes, jnp.where(used, 0, -1)).astype(jnp.int32)
  return rois, labels, regression_targets(gt_boxes, index[picked], rois, fg, weights)


def postprocess(logits, deltas, rois, roi_valid, image_hw, *, score_threshold: float = 0.05,
                nms_threshold: float = 0.5, max_detections: int = 100, pre_nms_top_k: int = 1000,
                min_size: float = 1e-2, weights=BOX_WEIGHTS):
  """One image's detections from the head's outputs (logits [R, K + 1], deltas [R, K + 1, 4])
  on `rois` [R, 4], as torchvision's postprocess_detections: softmax, class-specific boxes
  decoded and clipped, background dropped, scores > score_threshold, tiny boxes dropped, NMS per
  class, the best `max_detections`. For fixed shapes, only the `pre_nms_top_k` best (RoI,
  class) pairs enter the NMS. Returns {boxes, scores, labels, valid} [max_detections, ...]."""
  k = logits.shape[-1] - 1
  probs = jax.nn.softmax(logits, -1)[:, 1:]
  boxes = clip_xyxy(decode_boxes(deltas[:, 1:], rois[:, None, :], weights), *image_hw)
  labels = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), probs.shape)
  keep = roi_valid[:, None] & (probs > score_threshold) & large_enough(boxes, min_size)
  scores = jnp.where(keep, probs, -jnp.inf).reshape(-1)
  boxes, labels = boxes.reshape(-1, 4), labels.reshape(-1)
  scores, top = jax.lax.top_k(scores, min(pre_nms_top_k, scores.shape[0]))
  boxes, labels = boxes[top], labels[top]
  idx, valid = batched_nms(boxes, scores, labels, nms_threshold, max_detections,
                           score_threshold=-jnp.inf)
  return {"boxes": jnp.where(valid[:, None], boxes[idx], 0.0),
          "scores": jnp.where(valid, scores[idx], 0.0),
          "labels": jnp.where(valid, labels[idx], 0), "valid": valid}


def pixel_targets(targets, batch: int, image_hw) -> dict:
  """Batch targets (normalised yxyx boxes, classes, valid) checked, boxes in pixel xyxy."""
  try:
    boxes, classes, valid = (jnp.asarray(targets[k]) for k in ("boxes", "classes", "valid"))
  except (KeyError, TypeError) as e:
    raise ValueError(f"targets: expected a dict with 'boxes', 'classes' and 'valid', got "
                     f"{targets if not isinstance(targets, dict) else sorted(targets)}") from e
  if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[-1] != 4:
    raise ValueError(f"targets['boxes']: expected [{batch}, N, 4], got {tuple(boxes.shape)}")
  if classes.shape != boxes.shape[:2] or valid.shape != boxes.shape[:2]:
    raise ValueError(f"targets: expected 'classes' and 'valid' of shape {boxes.shape[:2]}, got "
                     f"{tuple(classes.shape)} and {tuple(valid.shape)}")
  pixels = yxyx_to_xyxy(boxes.astype(jnp.float32), *image_hw)
  return {"boxes": pixels, "classes": classes, "valid": valid.astype(bool)}


def check_fractions(module: nn.Module, *names: str) -> None:
  """Raises unless each option `names` of `module` is in [0, 1]."""
  for name in names:
    if not 0.0 <= getattr(module, name) <= 1.0:
      raise ValueError(f"{name}: expected a value in [0, 1], got {getattr(module, name)!r}")


def check_not_above(module: nn.Module, low: str, high: str) -> None:
  """Raises if option `low` of `module` exceeds option `high`."""
  if getattr(module, low) > getattr(module, high):
    raise ValueError(f"{low}: expected <= {high} ({getattr(module, high)}), got "
                     f"{getattr(module, low)}")


class RoIDetector(nn.Module):
  """A detector whose `BoxHead` classifies and regresses regions of a backbone's features: the
  options Faster R-CNN, Fast R-CNN, R-CNN and SPP-net share (subclasses add theirs).

  Attributes:
    backbone: a module whose `__call__(x, *, train, features=True)` returns feature maps.
    num_classes: object classes K (the head adds a background class).
    feature_level: index of the backbone map the head uses (-1: the last).
    representation_size: width of the head's two fully connected layers.
    roi_fg_iou, roi_bg_iou, roi_bg_iou_low, roi_batch_size, roi_positive_fraction: training
      RoIs per image (`sample_rois`).
    score_threshold, nms_threshold, max_detections, pre_nms_top_k, min_size: detections
      (`postprocess`).
    box_smooth_l1_beta: the box regression loss's beta (`jaxvision.losses.rcnn`).
    axis_name: BatchNorm statistics averaged over this mapped axis (pmap).
    dtype: computation dtype (parameters and outputs float32).
  """
  backbone: nn.Module
  num_classes: int
  feature_level: int = -1
  representation_size: int = 1024
  roi_fg_iou: float = 0.5
  roi_bg_iou: float = 0.5
  roi_bg_iou_low: float = 0.0
  roi_batch_size: int = 512
  roi_positive_fraction: float = 0.25
  score_threshold: float = 0.05
  nms_threshold: float = 0.5
  max_detections: int = 100
  pre_nms_top_k: int = 1000
  min_size: float = 1e-2
  box_smooth_l1_beta: float = 1 / 9
  axis_name: str | None = None
  dtype: Any = jnp.float32

  def check_head_options(self) -> None:
    """num_classes, the RoI sampling thresholds and the NMS threshold (ValueError naming the
    option)."""
    if self.num_classes < 1:
      raise ValueError(f"num_classes: expected >= 1, got {self.num_classes}")
    check_fractions(self, "roi_fg_iou", "roi_bg_iou", "roi_bg_iou_low", "roi_positive_fraction",
                    "nms_threshold")
    check_not_above(self, "roi_bg_iou", "roi_fg_iou")

  def box_head(self) -> BoxHead:
    """The head, named "box_head" (call from the subclass's compact `__call__`)."""
    return BoxHead(self.num_classes, self.representation_size, self.dtype, name="box_head")

  def gt_targets(self, targets: dict | None, x, train: bool) -> dict | None:
    """The checked pixel targets of images `x` (None without targets; required in training)."""
    if targets is None:
      if train:
        raise ValueError("targets: training needs the batch's boxes, classes and valid "
                         "(targets={'boxes': ..., 'classes': ..., 'valid': ...})")
      return None
    return pixel_targets(targets, x.shape[0], x.shape[1:3])

  def sampling_keys(self, train: bool, shape) -> jax.Array:
    """Keys of `shape` that sample anchors and RoIs: the `sampling` stream, fixed in evaluation
    (the same samples, so evaluation losses are comparable)."""
    if self.has_rng(SAMPLING_RNG):
      key = self.make_rng(SAMPLING_RNG)
    elif train:
      raise ValueError(f"rngs: training samples anchors and RoIs at random; pass "
                       f"rngs={{'{SAMPLING_RNG}': key}} to apply")
    else:
      key = jax.random.key(0)
    return jax.random.split(key, shape)

  def sample_rois_batch(self, keys, boxes, valid, gt: dict):
    """`sample_rois` over a batch with the `roi_*` settings: rois, labels, targets."""
    return jax.vmap(functools.partial(
        sample_rois, num_samples=self.roi_batch_size,
        positive_fraction=self.roi_positive_fraction, fg_iou=self.roi_fg_iou,
        bg_iou=self.roi_bg_iou, bg_iou_low=self.roi_bg_iou_low))(
            keys, boxes, valid, gt["boxes"], gt["classes"], gt["valid"])

  def postprocess_batch(self, logits, deltas, boxes, valid, image_hw) -> dict:
    """`postprocess` over a batch with the score, NMS and size settings."""
    return jax.vmap(functools.partial(
        postprocess, image_hw=image_hw, score_threshold=self.score_threshold,
        nms_threshold=self.nms_threshold, max_detections=self.max_detections,
        pre_nms_top_k=self.pre_nms_top_k, min_size=self.min_size))(logits, deltas, boxes, valid)
