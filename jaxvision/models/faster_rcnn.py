"""Faster R-CNN (Ren et al. 2015) and Fast R-CNN (Girshick 2015) on a backbone from the registry.

One feature map of the backbone (`feature_level`, stride = input size / map size) feeds

- the Region Proposal Network (Faster R-CNN only; `jaxvision.models.rpn`): a 3x3 conv + ReLU,
  then per position and anchor an objectness logit and box deltas (1x1 convs); anchors are
  `anchor_sizes` x `aspect_ratios` at every position (`jaxvision.ops.grid_anchors`). Proposals:
  the `rpn_pre_nms_top_n` best anchors, decoded (`jaxvision.ops.decode_boxes`), clipped to the
  image, tiny boxes dropped, NMS at `rpn_nms_threshold`, the best `rpn_post_nms_top_n` kept,
  all at fixed sizes (a `valid` mask) and without gradient, as in torchvision;
- the Fast R-CNN head (`jaxvision.models.roi_heads`): RoIAlign (or RoI max pooling) of each
  proposal to `roi_output_size`, two fully connected layers of `representation_size`, class
  scores over background + `num_classes` and class-specific box deltas (weights 10, 10, 5, 5).

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

from jaxvision.models.backbones import make_backbone
from jaxvision.models.registry import module_options, register_model
from jaxvision.models.roi_heads import RoIDetector, check_fractions, check_not_above
from jaxvision.models.rpn import RPNHead, rpn_targets_batch, select_proposals_batch
from jaxvision.nn.checks import check_images
from jaxvision.ops.anchors import grid_anchors
from jaxvision.ops.boxes import clip_xyxy
from jaxvision.ops.roi import roi_align, roi_pool
from jaxvision.ops.sampling import large_enough


class FasterRCNN(RoIDetector):
  """Faster R-CNN (`use_rpn=True`) or Fast R-CNN on given proposals / sliding windows.

  `__call__(x, *, train, targets=None, proposals=None, proposal_valid=None)`: `targets` is
  {"boxes" [B, N, 4] normalised (ymin, xmin, ymax, xmax), "classes" [B, N], "valid" [B, N]}
  (required in training); `proposals` pixel (x1, y1, x2, y2) [B, P, 4] (Fast R-CNN mode only).

  Attributes (defaults: the paper's and torchvision's), besides `RoIDetector`'s (backbone,
  num_classes, feature_level, representation_size, roi_*, the detection settings,
  box_smooth_l1_beta, axis_name, dtype):
    use_rpn: Faster R-CNN; False: Fast R-CNN.
    anchor_sizes, aspect_ratios (h / w), anchor_offset: the anchors (or sliding windows) at each
      position (`jaxvision.ops.grid_anchors`; offset 0.5 centres them on the cells).
    rpn_width: channels of the RPN's 3x3 conv (0: the feature map's).
    rpn_pre_nms_top_n_train/_test, rpn_post_nms_top_n_train/_test, rpn_nms_threshold,
      rpn_min_size: proposal selection.
    rpn_fg_iou, rpn_bg_iou, rpn_batch_size, rpn_positive_fraction: anchor sampling.
    roi_pool: "align" (RoIAlign) or "pool" (Fast R-CNN's RoI max pooling).
    roi_output_size, sampling_ratio, aligned: the pooling (torchvision's semantics).
    rpn_smooth_l1_beta: the RPN box loss's beta (torchvision's 1/9).
  """
  use_rpn: bool = True
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
  rpn_smooth_l1_beta: float = 1 / 9

  @property
  def num_anchors(self) -> int:
    return len(self.anchor_sizes) * len(self.aspect_ratios)

  @nn.compact
  def __call__(self, x, *, train: bool, targets: dict | None = None, proposals=None,
               proposal_valid=None):
    return self.detect(x, train=train, targets=targets, proposals=proposals,
                       proposal_valid=proposal_valid)[0]

  def detect(self, x, *, train: bool, targets: dict | None = None, proposals=None,
             proposal_valid=None):
    """The forward pass (call from a compact `__call__`): (outputs, the intermediates a
    subclass's extra head needs: `maps` (the backbone's feature maps), `gt` (pixel targets or
    None), `rois` and `roi_labels` (the sampled training RoIs, with targets), `image_hw`)."""
    check_images(x)
    self._check_options(proposals)
    gt = self.gt_targets(targets, x, train)
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
    keys = None if gt is None else self.sampling_keys(train, (2, batch))

    out = {}
    if self.use_rpn:
      logits, deltas = RPNHead(self.num_anchors, self.rpn_width, self.dtype, name="rpn")(features)
      if gt is not None:
        labels, reg = rpn_targets_batch(self, keys[0], anchors, gt)
        out["rpn"] = {"objectness": logits, "deltas": deltas, "labels": labels, "targets": reg}
      boxes, scores, valid = select_proposals_batch(self, logits, deltas, anchors, image_hw, train)
      out["proposals"] = {"boxes": boxes, "scores": scores, "valid": valid}
    else:
      if proposals is None:  # sliding windows
        boxes = jnp.broadcast_to(clip_xyxy(anchors, *image_hw), (batch, *anchors.shape))
        valid = jnp.broadcast_to(large_enough(boxes, self.rpn_min_size), boxes.shape[:2])
      else:
        boxes = jnp.asarray(proposals, jnp.float32)
        valid = (jnp.ones(boxes.shape[:2], bool) if proposal_valid is None else
                 jnp.asarray(proposal_valid, bool))
      out["proposals"] = {"boxes": boxes, "valid": valid}

    head = self.box_head()
    pool = functools.partial(self._pool, features, spatial_scale=grid[0] / image_hw[0])
    inner = {"maps": maps, "gt": gt, "image_hw": image_hw}
    if gt is not None:
      rois, labels, reg = self.sample_rois_batch(keys[1], boxes, valid, gt)
      cls_logits, box_deltas = head(pool(rois))
      out["roi"] = {"logits": cls_logits, "deltas": box_deltas, "labels": labels, "targets": reg}
      inner.update(rois=rois, roi_labels=labels)
    if not train:
      cls_logits, box_deltas = head(pool(boxes))
      out["detections"] = self.postprocess_batch(cls_logits, box_deltas, boxes, valid, image_hw)
    return out, inner

  def _pool(self, features, rois, spatial_scale: float):
    rois = jax.lax.stop_gradient(rois)
    if self.roi_pool == "align":
      return roi_align(features, rois, self.roi_output_size, spatial_scale, self.sampling_ratio,
                       self.aligned)
    return roi_pool(features, rois, self.roi_output_size, spatial_scale)

  def _check_options(self, proposals):
    self.check_head_options()
    if self.roi_pool not in ("align", "pool"):
      raise ValueError(f"roi_pool: expected 'align' or 'pool', got {self.roi_pool!r}")
    if not self.anchor_sizes or not self.aspect_ratios:
      raise ValueError("anchor_sizes, aspect_ratios: expected at least one of each, got "
                       f"{tuple(self.anchor_sizes)}, {tuple(self.aspect_ratios)}")
    check_fractions(self, "rpn_fg_iou", "rpn_bg_iou", "rpn_positive_fraction",
                    "rpn_nms_threshold")
    check_not_above(self, "rpn_bg_iou", "rpn_fg_iou")
    if proposals is not None and self.use_rpn:
      raise ValueError("proposals: Faster R-CNN makes its own; pass proposals to fast_rcnn")


def _rcnn(use_rpn: bool, *, num_classes: int, backbone: str = "resnet50",
          backbone_options: dict | None = None, axis_name: str | None = None,
          dtype: Any = jnp.float32, module: type | None = None, **options) -> FasterRCNN:
  """`module` (default FasterRCNN, or a subclass) on the named backbone."""
  net = make_backbone(backbone, backbone_options, num_classes=num_classes, axis_name=axis_name,
                      dtype=dtype)
  for key in ("anchor_sizes", "aspect_ratios"):
    if key in options:
      options[key] = tuple(float(v) for v in options[key])
  return (module or FasterRCNN)(backbone=net, num_classes=num_classes, use_rpn=use_rpn,
                                axis_name=axis_name, dtype=dtype, **options)


_OPTIONS = module_options(FasterRCNN, exclude=("backbone", "use_rpn")) | {"backbone",
                                                                         "backbone_options"}
_RPN_ONLY = {n for n in _OPTIONS if n.startswith("rpn_") and n != "rpn_min_size"}
register_model("faster_rcnn", functools.partial(_rcnn, True), _OPTIONS)
register_model("fast_rcnn", functools.partial(_rcnn, False), _OPTIONS - _RPN_ONLY)
