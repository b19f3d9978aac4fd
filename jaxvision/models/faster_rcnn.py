"""Faster R-CNN (Ren et al. 2015) and Fast R-CNN (Girshick 2015) on a backbone from the registry.

One feature map of the backbone (`feature_level`, stride = input size / map size) feeds

- the Region Proposal Network (Faster R-CNN only): a 3x3 conv + ReLU, then per position and
  anchor an objectness logit and box deltas (1x1 convs); anchors are `anchor_sizes` x
  `aspect_ratios` at every position (`jaxvision.ops.grid_anchors`). Proposals: the
  `rpn_pre_nms_top_n` best anchors, decoded (`jaxvision.ops.decode_boxes`), clipped to the
  image, tiny boxes dropped, NMS at `rpn_nms_threshold`, the best `rpn_post_nms_top_n` kept,
  all at fixed sizes (a `valid` mask) and without gradient, as in torchvision;
- the Fast R-CNN head: RoIAlign (or RoI max pooling) of each proposal to `roi_output_size`,
  two fully connected layers of `representation_size`, class scores over background +
  `num_classes` and class-specific box deltas (weights 10, 10, 5, 5).

Fast R-CNN mode (`fast_rcnn`, `use_rpn=False`): no RPN; the head is trained and applied on given
proposals (`proposals=` pixel boxes [B, P, 4]) or, by default, on sliding windows (the anchor
grid itself: every window of `anchor_sizes` x `aspect_ratios` at every feature position).

With `targets` (the batch's normalised `boxes`, `classes`, `valid`), the forward pass also
samples training examples with the "sampling" rng (in evaluation, a fixed key): 256 anchors per
image at up to 1:1 positives (IoU >= 0.7 with a box, or an anchor of highest IoU for a box) to
negatives (IoU < 0.3), and 512 RoIs per image (the proposals plus the true boxes) at up to 1:3
foreground (IoU >= 0.5) to background (IoU in [`roi_bg_iou_low`, 0.5)). The outputs then
carry the predictions and targets that `jaxvision.losses.rcnn` turns into the four losses.

Outputs: a dict; `rpn` and `roi` ({logits/objectness, deltas, labels, targets}) when targets
are given; in evaluation `detections`: per image `boxes` [B, D, 4] (x1, y1, x2, y2) in input
pixels, `scores`, `labels` (the batch's class ids, no background id) and `valid`, by decreasing
score (D = `max_detections`, as torchvision's detection models but padded), and `proposals`.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.registry import create_model, module_options, register_model
from jaxvision.nn.checks import check_images
from jaxvision.ops.anchors import grid_anchors
from jaxvision.ops.box_coder import decode_boxes, encode_boxes
from jaxvision.ops.boxes import box_iou, clip_xyxy, yxyx_to_xyxy
from jaxvision.ops.nms import batched_nms, nms
from jaxvision.ops.roi import roi_align, roi_pool

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
SAMPLING_RNG = "sampling"


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


# Target assignment and sampling: one image, fixed shapes (vmapped over the batch).


def match(boxes, gt_boxes, gt_valid):
  """Best true box of each of `boxes` [M, 4]: (its index [M], its IoU [M], IoU matrix [M, N]);
  IoU -1 with padding boxes, so an image without boxes gives IoU -1 everywhere."""
  if gt_boxes.shape[0] == 0:
    m = boxes.shape[0]
    return jnp.zeros((m,), jnp.int32), jnp.full((m,), -1.0), jnp.zeros((m, 0))
  overlaps = jnp.where(gt_valid[None], jnp.nan_to_num(box_iou(boxes, gt_boxes)), -1.0)
  return jnp.argmax(overlaps, 1).astype(jnp.int32), jnp.max(overlaps, 1), overlaps


def _random_rank(key, mask):
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
  return (positive & (_random_rank(pos_key, positive) < num_pos),
          negative & (_random_rank(neg_key, negative) < num_neg))


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
  targets = _targets(gt_boxes, index, anchors, pos, weights)
  return labels, targets


def _targets(gt_boxes, index, reference, positive, weights):
  if gt_boxes.shape[0] == 0:
    return jnp.zeros(reference.shape)
  safe = jnp.where(positive[:, None], reference, jnp.array([0.0, 0.0, 1.0, 1.0]))
  return jnp.where(positive[:, None], encode_boxes(gt_boxes[index], safe, weights), 0.0)


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
  return rois, labels, _targets(gt_boxes, index[picked], rois, fg, weights)


def _valid_size(boxes, min_size: float):
  width, height = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
  return (width >= min_size) & (height >= min_size)


def select_proposals(logits, deltas, anchors, image_hw, *, pre_nms_top_n: int,
                     post_nms_top_n: int, nms_threshold: float = 0.7, min_size: float = 1e-3,
                     weights=RPN_WEIGHTS):
  """One image's proposals from RPN outputs (logits [M], deltas [M, 4]) for `anchors` [M, 4]:
  top-k by objectness, decode, clip, drop boxes smaller than `min_size`, NMS, top-n.
  Returns (boxes [post_nms_top_n, 4], objectness logits, valid), padding rows zero."""
  k = min(pre_nms_top_n, logits.shape[0])
  scores, top = jax.lax.top_k(logits, k)
  boxes = clip_xyxy(decode_boxes(deltas[top], anchors[top], weights), *image_hw)
  scores = jnp.where(_valid_size(boxes, min_size), scores, -jnp.inf)
  keep, valid = nms(boxes, scores, nms_threshold, post_nms_top_n, score_threshold=-jnp.inf)
  return (jnp.where(valid[:, None], boxes[keep], 0.0), jnp.where(valid, scores[keep], 0.0),
          valid)


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
  keep = roi_valid[:, None] & (probs > score_threshold) & _valid_size(boxes, min_size)
  scores = jnp.where(keep, probs, -jnp.inf).reshape(-1)
  boxes, labels = boxes.reshape(-1, 4), labels.reshape(-1)
  scores, top = jax.lax.top_k(scores, min(pre_nms_top_k, scores.shape[0]))
  boxes, labels = boxes[top], labels[top]
  idx, valid = batched_nms(boxes, scores, labels, nms_threshold, max_detections,
                           score_threshold=-jnp.inf)
  return {"boxes": jnp.where(valid[:, None], boxes[idx], 0.0),
          "scores": jnp.where(valid, scores[idx], 0.0),
          "labels": jnp.where(valid, labels[idx], 0), "valid": valid}


def sampling_key(module: nn.Module, train: bool):
  """The key that samples anchors and RoIs: the module's `sampling` stream, fixed in evaluation."""
  if module.has_rng(SAMPLING_RNG):
    return module.make_rng(SAMPLING_RNG)
  if train:
    raise ValueError(f"rngs: training samples anchors and RoIs at random; pass "
                     f"rngs={{'{SAMPLING_RNG}': key}} to apply")
  return jax.random.key(0)  # evaluation losses: the same samples every time


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


def _check_thresholds(module: nn.Module, *names: str) -> None:
  for name in names:
    if not 0.0 <= getattr(module, name) <= 1.0:
      raise ValueError(f"{name}: expected a value in [0, 1], got {getattr(module, name)!r}")


def _check_below(module: nn.Module, low: str, high: str) -> None:
  if getattr(module, low) > getattr(module, high):
    raise ValueError(f"{low}: expected <= {high} ({getattr(module, high)}), got "
                     f"{getattr(module, low)}")


def check_head_options(module: nn.Module) -> None:
  """The options every Fast R-CNN-style box head has: num_classes, the RoI sampling thresholds
  and the NMS threshold (ValueError naming the option)."""
  if module.num_classes < 1:
    raise ValueError(f"num_classes: expected >= 1, got {module.num_classes}")
  _check_thresholds(module, "roi_fg_iou", "roi_bg_iou", "roi_bg_iou_low", "roi_positive_fraction",
                    "nms_threshold")
  _check_below(module, "roi_bg_iou", "roi_fg_iou")


def sample_rois_batch(module: nn.Module, keys, boxes, valid, gt: dict):
  """`sample_rois` over a batch with the module's `roi_*` settings: rois, labels, targets."""
  return jax.vmap(functools.partial(
      sample_rois, num_samples=module.roi_batch_size,
      positive_fraction=module.roi_positive_fraction, fg_iou=module.roi_fg_iou,
      bg_iou=module.roi_bg_iou, bg_iou_low=module.roi_bg_iou_low))(
          keys, boxes, valid, gt["boxes"], gt["classes"], gt["valid"])


def postprocess_batch(module: nn.Module, logits, deltas, boxes, valid, image_hw) -> dict:
  """`postprocess` over a batch with the module's score, NMS and size settings."""
  return jax.vmap(functools.partial(
      postprocess, image_hw=image_hw, score_threshold=module.score_threshold,
      nms_threshold=module.nms_threshold, max_detections=module.max_detections,
      pre_nms_top_k=module.pre_nms_top_k, min_size=module.min_size))(logits, deltas, boxes, valid)


class FasterRCNN(nn.Module):
  """Faster R-CNN (`use_rpn=True`) or Fast R-CNN on given proposals / sliding windows.

  `__call__(x, *, train, targets=None, proposals=None, proposal_valid=None)`: `targets` is
  {"boxes" [B, N, 4] normalised (ymin, xmin, ymax, xmax), "classes" [B, N], "valid" [B, N]}
  (required in training); `proposals` pixel (x1, y1, x2, y2) [B, P, 4] (Fast R-CNN mode only).

  Attributes (defaults: the paper's and torchvision's):
    backbone: a module whose `__call__(x, *, train, features=True)` returns feature maps.
    num_classes: object classes K (the head adds a background class).
    use_rpn: Faster R-CNN; False: Fast R-CNN.
    feature_level: index of the backbone map the heads use (-1: the last).
    anchor_sizes, aspect_ratios (h / w), anchor_offset: the anchors (or sliding windows) at each
      position (`jaxvision.ops.grid_anchors`; offset 0.5 centres them on the cells).
    rpn_width: channels of the RPN's 3x3 conv (0: the feature map's).
    rpn_pre_nms_top_n_train/_test, rpn_post_nms_top_n_train/_test, rpn_nms_threshold,
      rpn_min_size: proposal selection.
    rpn_fg_iou, rpn_bg_iou, rpn_batch_size, rpn_positive_fraction: anchor sampling.
    roi_pool: "align" (RoIAlign) or "pool" (Fast R-CNN's RoI max pooling).
    roi_output_size, sampling_ratio, aligned: the pooling (torchvision's semantics).
    representation_size: width of the two fully connected layers.
    roi_fg_iou, roi_bg_iou, roi_bg_iou_low, roi_batch_size, roi_positive_fraction: RoI sampling.
    score_threshold, nms_threshold, max_detections, pre_nms_top_k, min_size: detections.
    rpn_smooth_l1_beta, box_smooth_l1_beta: the smooth L1 losses' beta (torchvision's 1/9).
    axis_name: BatchNorm statistics averaged over this mapped axis (pmap).
    dtype: computation dtype (parameters float32; outputs float32).
  """
  backbone: nn.Module
  num_classes: int
  use_rpn: bool = True
  feature_level: int = -1
  anchor_sizes: Sequence[float] = (128.0, 256.0, 512.0)
  aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  anchor_offset: float = 0.0
  rpn_width: int = 0
  rpn_pre_nms_top_n_train: int = 2000
  rpn_pre_nms_top_n_test: int = 1000
  rpn_post_nms_top_n_train: int = 2000
  rpn_post_nms_top_n_test: int = 1000
  rpn_nms_threshold: float = 0.7
  rpn_min_size: float = 1e-3
  rpn_fg_iou: float = 0.7
  rpn_bg_iou: float = 0.3
  rpn_batch_size: int = 256
  rpn_positive_fraction: float = 0.5
  roi_pool: str = "align"
  roi_output_size: int = 7
  sampling_ratio: int = 2
  aligned: bool = False
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
  rpn_smooth_l1_beta: float = 1 / 9
  box_smooth_l1_beta: float = 1 / 9
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @property
  def num_anchors(self) -> int:
    return len(self.anchor_sizes) * len(self.aspect_ratios)

  @nn.compact
  def __call__(self, x, *, train: bool, targets: dict | None = None, proposals=None,
               proposal_valid=None):
    check_images(x)
    self._check_options(proposals)
    if train and targets is None:
      raise ValueError("targets: training needs the batch's boxes, classes and valid "
                       "(targets={'boxes': ..., 'classes': ..., 'valid': ...})")
    maps = self.backbone(x, train=train, features=True)
    features = maps[self.feature_level]
    image_hw = x.shape[1:3]
    grid = features.shape[1:3]
    if image_hw[0] % grid[0] or image_hw[1] % grid[1]:
      raise ValueError(f"x: images of shape {tuple(x.shape)} give a {grid[0]} x {grid[1]} feature "
                       "map that does not divide them; use sizes divisible by the backbone's "
                       f"stride at feature_level={self.feature_level}")
    stride = (image_hw[0] // grid[0], image_hw[1] // grid[1])
    anchors = jnp.asarray(grid_anchors(grid, stride, self.anchor_sizes, self.aspect_ratios,
                                       self.anchor_offset))
    batch = x.shape[0]
    gt = None if targets is None else pixel_targets(targets, batch, image_hw)
    keys = None
    if gt is not None:
      keys = jax.random.split(sampling_key(self, train), (2, batch))

    out = {}
    if self.use_rpn:
      logits, deltas = RPNHead(self.num_anchors, self.rpn_width, self.dtype, name="rpn")(features)
      if gt is not None:
        labels, reg = jax.vmap(functools.partial(
            rpn_targets, fg_iou=self.rpn_fg_iou, bg_iou=self.rpn_bg_iou,
            num_samples=self.rpn_batch_size, positive_fraction=self.rpn_positive_fraction),
            in_axes=(0, None, 0, 0))(keys[0], anchors, gt["boxes"], gt["valid"])
        out["rpn"] = {"objectness": logits, "deltas": deltas, "labels": labels, "targets": reg}
      top_n = ((self.rpn_pre_nms_top_n_train, self.rpn_post_nms_top_n_train) if train else
               (self.rpn_pre_nms_top_n_test, self.rpn_post_nms_top_n_test))
      select = functools.partial(select_proposals, image_hw=image_hw, pre_nms_top_n=top_n[0],
                                 post_nms_top_n=top_n[1], nms_threshold=self.rpn_nms_threshold,
                                 min_size=self.rpn_min_size)
      boxes, scores, valid = jax.vmap(select, in_axes=(0, 0, None))(
          jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas), anchors)
      out["proposals"] = {"boxes": boxes, "scores": scores, "valid": valid}
    else:
      if proposals is None:  # sliding windows
        boxes = jnp.broadcast_to(clip_xyxy(anchors, *image_hw), (batch, *anchors.shape))
        valid = jnp.broadcast_to(_valid_size(boxes, self.rpn_min_size), boxes.shape[:2])
      else:
        boxes = jnp.asarray(proposals, jnp.float32)
        valid = (jnp.ones(boxes.shape[:2], bool) if proposal_valid is None else
                 jnp.asarray(proposal_valid, bool))
      out["proposals"] = {"boxes": boxes, "valid": valid}

    head = BoxHead(self.num_classes, self.representation_size, self.dtype, name="box_head")
    pool = functools.partial(self._pool, features, spatial_scale=grid[0] / image_hw[0])
    if gt is not None:
      rois, labels, reg = sample_rois_batch(self, keys[1], boxes, valid, gt)
      cls_logits, box_deltas = head(pool(rois))
      out["roi"] = {"logits": cls_logits, "deltas": box_deltas, "labels": labels, "targets": reg}
    if not train:
      cls_logits, box_deltas = head(pool(boxes))
      out["detections"] = postprocess_batch(self, cls_logits, box_deltas, boxes, valid, image_hw)
    return out

  def _pool(self, features, rois, spatial_scale: float):
    rois = jax.lax.stop_gradient(rois)
    if self.roi_pool == "align":
      return roi_align(features, rois, self.roi_output_size, spatial_scale, self.sampling_ratio,
                       self.aligned)
    return roi_pool(features, rois, self.roi_output_size, spatial_scale)

  def _check_options(self, proposals):
    check_head_options(self)
    if self.roi_pool not in ("align", "pool"):
      raise ValueError(f"roi_pool: expected 'align' or 'pool', got {self.roi_pool!r}")
    if not self.anchor_sizes or not self.aspect_ratios:
      raise ValueError("anchor_sizes, aspect_ratios: expected at least one of each, got "
                       f"{tuple(self.anchor_sizes)}, {tuple(self.aspect_ratios)}")
    _check_thresholds(self, "rpn_fg_iou", "rpn_bg_iou", "rpn_positive_fraction",
                      "rpn_nms_threshold")
    _check_below(self, "rpn_bg_iou", "rpn_fg_iou")
    if proposals is not None and self.use_rpn:
      raise ValueError("proposals: Faster R-CNN makes its own; pass proposals to fast_rcnn")


def _rcnn(use_rpn: bool, *, num_classes: int, backbone: str = "resnet50",
          backbone_options: dict | None = None, axis_name: str | None = None,
          dtype: Any = jnp.float32, **options) -> FasterRCNN:
  backbone_options = backbone_options or {}
  if hasattr(backbone_options, "to_dict"):  # a ConfigDict from a training config
    backbone_options = backbone_options.to_dict()
  net = create_model(backbone, num_classes=num_classes, axis_name=axis_name, dtype=dtype,
                     **backbone_options)
  for key in ("anchor_sizes", "aspect_ratios"):
    if key in options:
      options[key] = tuple(float(v) for v in options[key])
  return FasterRCNN(backbone=net, num_classes=num_classes, use_rpn=use_rpn, axis_name=axis_name,
                    dtype=dtype, **options)


_OPTIONS = module_options(FasterRCNN, exclude=("backbone", "use_rpn")) | {"backbone",
                                                                         "backbone_options"}
_RPN_ONLY = {n for n in _OPTIONS if n.startswith("rpn_") and n != "rpn_min_size"}
register_model("faster_rcnn", functools.partial(_rcnn, True), _OPTIONS)
register_model("fast_rcnn", functools.partial(_rcnn, False), _OPTIONS - _RPN_ONLY)
