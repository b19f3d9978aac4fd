"""R-CNN (Girshick et al. 2014): a CNN pass per warped region proposal, a linear classifier and
class-specific box regression on its features, NMS per class.

For every proposal (pixel (x1, y1, x2, y2) boxes from outside, e.g. selective search):

- crop and warp: the box, optionally dilated so that the warped image holds `context_padding`
  pixels of context around it (the paper's p = 16 at 227 x 227), is resampled bilinearly to
  `warp_size` x `warp_size` (`warp_regions`: RoIAlign on the image, one sample per output pixel
  at its centre); samples up to one pixel beyond the image take the border pixel, further ones
  zero (the mean colour of normalised input, the paper's mean fill);
- the CNN: a registry backbone on each warped region separately (one pass per region, the cost
  the lecture charges R-CNN with), its `feature_level` map as the region's "pool5";
- the head (`jaxvision.models.roi_heads.BoxHead`, shared with Fast R-CNN and SPP-net): two
  fully connected layers ("fc6", "fc7"), a linear classifier over background + `num_classes`
  and class-specific box deltas (the paper's regression of the proposal box, coded by
  `jaxvision.ops.encode_boxes` with weights 10, 10, 5, 5);
- detections: softmax, decode, NMS per class (`jaxvision.models.roi_heads.postprocess`).

Differences from the paper, as Fast R-CNN later argued for: one softmax classifier trained with
the CNN instead of per-class SVMs after fine-tuning, and the box regressor trained jointly (on
fc7, smooth L1) instead of ridge regression on pool5. Training RoIs are sampled as in the
paper's fine-tuning (`jaxvision.models.roi_heads.sample_rois`): foreground IoU >= 0.5 with a
true box, background below, up to 1:3, the true boxes added as proposals.

`RegionDetector` holds what R-CNN and SPP-net (`jaxvision.models.sppnet`) share; they differ only
in how a region becomes a feature (`region_features`). Interface and outputs are those of
`jaxvision.models.faster_rcnn.FasterRCNN` in Fast R-CNN mode, so `jaxvision.losses.rcnn` and
`jaxvision.training.rcnn_task.normalised_detections` apply unchanged.

Proposal handling (documented, never an error inside jit): boxes are clipped to the image
(a window larger than the image becomes the whole image); boxes that are empty after clipping,
inverted or not finite are dropped (invalid); an image whose proposals are all invalid gives no
detections (in training its RoIs are its true boxes); an empty proposal set (P = 0) is padded
to one invalid box. `init` without proposals (as the run builder calls it) uses the whole image.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.backbones import make_backbone
from jaxvision.models.registry import module_options, register_model
from jaxvision.models.roi_heads import RoIDetector
from jaxvision.nn.checks import check_images, check_positive_int
from jaxvision.ops.boxes import clip_xyxy
from jaxvision.ops.roi import roi_align


def dilate_boxes(boxes, warp_size: int, context_padding: float):
  """Boxes [..., 4] grown about their centres so that, warped to `warp_size`, the original box
  fills the inner `warp_size - 2 context_padding` pixels (the paper's context padding)."""
  if context_padding == 0:
    return boxes
  scale = warp_size / (warp_size - 2.0 * context_padding)
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2
  half = (boxes[..., 2:] - boxes[..., :2]) * (scale / 2)
  return jnp.concatenate([centre - half, centre + half], axis=-1)


def warp_regions(images, boxes, warp_size: int, context_padding: float = 0.0):
  """R-CNN's crop-and-warp: each box resampled bilinearly to `warp_size` x `warp_size`.

  Output pixel (i, j) of box (x1, y1, x2, y2) (after dilation) is the bilinear interpolation of
  the image at continuous point (x1 + (j + 0.5) w / S, y1 + (i + 0.5) h / S), pixel centres at
  half-integers (RoIAlign with `aligned=True`, one sample per output pixel).

  Args:
    images: [B, H, W, C].
    boxes: [B, K, 4] pixel (x1, y1, x2, y2).
    warp_size: S, the side of the warped regions.
    context_padding: pixels of context around the box in the warped region, in [0, S / 2).

  Returns:
    [B, K, S, S, C].
  """
  size = check_positive_int(warp_size, "warp_size")
  if not 0 <= context_padding < size / 2:
    raise ValueError(f"context_padding: expected a value in [0, warp_size / 2) = [0, {size / 2}), "
                     f"got {context_padding!r}")
  boxes = dilate_boxes(jnp.asarray(boxes, jnp.float32), size, context_padding)
  return roi_align(images, boxes, size, spatial_scale=1.0, sampling_ratio=1, aligned=True)


def clean_proposals(proposals, proposal_valid, image_hw):
  """Proposals [B, P, 4] clipped to the image; invalid (not given valid, empty after clipping,
  inverted, not finite) rows zeroed. P = 0 is padded to one invalid box. Returns (boxes, valid)."""
  boxes = jnp.asarray(proposals, jnp.float32)
  batch = boxes.shape[0]
  valid = (jnp.ones(boxes.shape[:2], bool) if proposal_valid is None
           else jnp.asarray(proposal_valid, bool))
  if boxes.shape[1] == 0:
    boxes, valid = jnp.zeros((batch, 1, 4)), jnp.zeros((batch, 1), bool)
  valid &= jnp.all(jnp.isfinite(boxes), -1)
  boxes = clip_xyxy(jnp.where(valid[..., None], boxes, 0.0), *image_hw)
  valid &= (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
  return jnp.where(valid[..., None], boxes, 0.0), valid


def check_proposals(proposals, proposal_valid, batch: int) -> None:
  """Raises unless `proposals` is [batch, P, 4] and `proposal_valid` None or [batch, P]."""
  if proposals is None:
    raise ValueError("proposals: R-CNN and SPP-net classify given region proposals; pass pixel "
                     f"(x1, y1, x2, y2) boxes [{batch}, P, 4] (e.g. from selective search)")
  shape = tuple(jnp.shape(proposals))
  if len(shape) != 3 or shape[0] != batch or shape[-1] != 4:
    raise ValueError(f"proposals: expected pixel (x1, y1, x2, y2) boxes [{batch}, P, 4], got "
                     f"shape {shape}")
  if proposal_valid is not None and tuple(jnp.shape(proposal_valid)) != shape[:2]:
    raise ValueError(f"proposal_valid: expected shape {shape[:2]} to match proposals, got "
                     f"{tuple(jnp.shape(proposal_valid))}")


class RegionDetector(RoIDetector):
  """Classifies and regresses given proposals from per-region features (subclasses say how).

  `__call__(x, *, train, targets=None, proposals, proposal_valid=None)` as
  `FasterRCNN` in Fast R-CNN mode (see the module doc for the proposal handling). The
  attributes are `jaxvision.models.roi_heads.RoIDetector`'s, with 128 training RoIs per image
  (`roi_batch_size`); `feature_level` picks the backbone map used as the region feature.
  """
  roi_batch_size: int = 128

  def region_features(self, x, boxes, train: bool):
    """Features [B, R, ...] of the pixel boxes [B, R, 4] of images `x` [B, H, W, C]."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, x, *, train: bool, targets: dict | None = None, proposals=None,
               proposal_valid=None):
    check_images(x)
    self.check_head_options()
    if proposals is None and self.is_initializing():  # `init` on images alone: the whole image
      whole = jnp.array([0.0, 0.0, x.shape[2], x.shape[1]], jnp.float32)
      proposals = jnp.broadcast_to(whole, (x.shape[0], 1, 4))
    check_proposals(proposals, proposal_valid, x.shape[0])
    gt = self.gt_targets(targets, x, train)
    image_hw = x.shape[1:3]
    boxes, valid = clean_proposals(proposals, proposal_valid, image_hw)
    out = {"proposals": {"boxes": boxes, "valid": valid}}
    head = self.box_head()
    if gt is not None:
      keys = self.sampling_keys(train, x.shape[0])
      rois, labels, reg = self.sample_rois_batch(keys, boxes, valid, gt)
      logits, deltas = head(self.region_features(x, jax.lax.stop_gradient(rois), train))
      out["roi"] = {"logits": logits, "deltas": deltas, "labels": labels, "targets": reg,
                    "rois": rois}
    if not train:
      logits, deltas = head(self.region_features(x, boxes, train))
      out["detections"] = self.postprocess_batch(logits, deltas, boxes, valid, image_hw)
    return out


class RCNN(RegionDetector):
  """R-CNN: each proposal warped to `warp_size` (with `context_padding`) and passed through the
  backbone on its own (see the module doc; the other attributes are `RegionDetector`'s)."""
  warp_size: int = 32
  context_padding: float = 0.0

  def region_features(self, x, boxes, train: bool):
    crops = warp_regions(x, boxes, self.warp_size, self.context_padding)
    b, r = crops.shape[:2]
    maps = self.backbone(crops.reshape(b * r, *crops.shape[2:]), train=train, features=True)
    pool5 = maps[self.feature_level]
    return pool5.reshape(b, r, *pool5.shape[1:])


def detector_factory(cls: type[RegionDetector]):
  """`factory(num_classes, backbone="resnet50", backbone_options=None, ...)` building `cls` on a
  registry backbone, as `create_model` calls it."""

  def factory(*, num_classes: int, backbone: str = "resnet50",
              backbone_options: dict | None = None, axis_name: str | None = None,
              dtype: Any = jnp.float32, **options) -> RegionDetector:
    net = make_backbone(backbone, backbone_options, num_classes=num_classes,
                        axis_name=axis_name, dtype=dtype)
    return cls(backbone=net, num_classes=num_classes, axis_name=axis_name, dtype=dtype, **options)

  return factory


def registry_options(cls: type[RegionDetector]) -> frozenset[str]:
  return module_options(cls, exclude=("backbone",)) | {"backbone", "backbone_options"}


register_model("rcnn", detector_factory(RCNN), registry_options(RCNN))
