"""Mask R-CNN (He et al. 2017): Faster R-CNN (`jaxvision.models.faster_rcnn`) plus a mask head.

The mask branch pools each RoI from one feature map (`mask_feature_level`, default the box
head's) with RoIAlign at `mask_roi_size` (14 x 14), applies `mask_num_convs` 3x3 convs + ReLU of
`mask_width` channels, a 2x2 stride-2 transpose conv + ReLU (28 x 28) and a 1x1 conv to one mask
logit per class (class-specific masks, no competition between classes).

- Training: the positive sampled RoIs (foreground, IoU >= `roi_fg_iou`), the first
  `mask_rois_per_image` of them per image (default roi_batch_size x roi_positive_fraction, all
  of them); each one's target is the mask of the true box it overlaps most, resampled into the
  RoI at 28 x 28 (`mask_targets`: RoIAlign of the 0/1 mask, >= 0.5). Outputs `mask`: {`logits`
  [B, P, 28, 28, K], `classes` [B, P] (the true class), `targets` [B, P, 28, 28], `valid`
  [B, P]} for `jaxvision.losses.mask_rcnn`.
- Evaluation: the head on the detected boxes; `detections["masks"]` [B, D, 28, 28] holds the
  sigmoid of the predicted class's logits (paste into the image at the box and threshold at 0.5:
  `jaxvision.metrics.masks.paste_masks`).

Targets add `masks` [B, N, H, W] (0/1, the input's size; the pipeline's `instance_masks`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.faster_rcnn import FasterRCNN, _OPTIONS, _rcnn
from jaxvision.models.registry import register_model
from jaxvision.nn import conv, residual
from jaxvision.ops.roi import roi_align
from jaxvision.ops.sampling import match


def _conv(features: int, size: int, dtype, name: str) -> nn.Conv:
  """A 'SAME' convolution with torchvision's kaiming init; on the CPU the RoI batch's small maps
  run as im2col (`jaxvision.nn.conv`), several times faster than XLA's convolution, most of all
  in the backward pass."""
  return nn.Conv(features, (size, size), padding="SAME", dtype=dtype, name=name,
                 kernel_init=residual.conv_kernel_init,
                 conv_general_dilated=conv.conv_general_dilated)


class Upsample2x(nn.Module):
  """The 2x2 stride-2 transpose convolution (`kernel` [2, 2, C, F], `bias` [F]): each input
  position writes its own 2 x 2 block of the output (kernel tap (a, b) at (2i + a, 2j + b))."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", residual.conv_kernel_init, (2, 2, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    y = jnp.einsum("...hwc,abcf->...hawbf", x.astype(self.dtype), kernel.astype(self.dtype))
    *lead, h, _, w, _, f = y.shape
    return y.reshape(*lead, 2 * h, 2 * w, f) + bias.astype(self.dtype)


class MaskHead(nn.Module):
  """Pooled RoIs [B, R, s, s, C] -> 3x3 convs + ReLU -> 2x transpose conv + ReLU -> 1x1 conv:
  per-class mask logits [B, R, 2s, 2s, K], float32 (torchvision's layer names)."""
  num_classes: int
  width: int = 256
  num_convs: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_convs):
      x = nn.relu(_conv(self.width, 3, self.dtype, f"mask_fcn{i + 1}")(x))
    x = nn.relu(Upsample2x(self.width, self.dtype, name="conv5_mask")(x))
    x = _conv(self.num_classes, 1, self.dtype, "mask_fcn_logits")(x)
    return x.astype(jnp.float32)


def mask_targets(gt_masks, gt_index, rois, size: int = 28):
  """Each RoI's target: the mask of its true box resampled into it (one image).

  Args:
    gt_masks: [N, H, W] 0/1 masks in the coordinates of the pixel boxes.
    gt_index: [R] the true box of each RoI.
    rois: [R, 4] pixel (x1, y1, x2, y2).
    size: the target's side.

  Returns:
    float32 [R, size, size]: RoIAlign (2 samples per bin, `aligned`: pixel i covers [i, i + 1),
    so a box on a mask's edges gives all ones) of the mask, thresholded at 0.5.
  """
  picked = jnp.asarray(gt_masks, jnp.float32)[gt_index][..., None]  # [R, H, W, 1]
  pooled = roi_align(picked, jnp.asarray(rois, jnp.float32)[:, None, :], size, 1.0, 2, True)
  return (pooled[:, 0, ..., 0] >= 0.5).astype(jnp.float32)


def _select_positive(labels, count: int):
  """Indices [count] of the first foreground RoIs (labels > 0) and their validity."""
  (index,) = jnp.nonzero(labels > 0, size=count, fill_value=0)
  return index, jnp.arange(count) < jnp.sum(labels > 0)


class MaskRCNN(FasterRCNN):
  """Faster R-CNN with a mask head (see the module doc); options as `FasterRCNN`'s plus:

  Attributes:
    mask_roi_size: RoIAlign output of the mask branch (the masks are twice that).
    mask_width, mask_num_convs: the 3x3 convs of the mask head.
    mask_feature_level: the backbone map the mask branch pools (None: `feature_level`).
    mask_rois_per_image: positive RoIs per image that train the masks (0: all that can be
      sampled, roi_batch_size x roi_positive_fraction).
  """
  mask_roi_size: int = 14
  mask_width: int = 256
  mask_num_convs: int = 4
  mask_feature_level: int | None = None
  mask_rois_per_image: int = 0

  @nn.compact
  def __call__(self, x, *, train: bool, targets: dict | None = None, proposals=None,
               proposal_valid=None):
    self._check_mask_options(targets, x)
    out, inner = self.detect(x, train=train, targets=targets, proposals=proposals,
                             proposal_valid=proposal_valid)
    level = self.feature_level if self.mask_feature_level is None else self.mask_feature_level
    features = inner["maps"][level]
    scale = features.shape[1] / x.shape[1]
    head = MaskHead(self.num_classes, self.mask_width, self.mask_num_convs, self.dtype,
                    name="mask_head")
    pool = functools.partial(roi_align, features, output_size=self.mask_roi_size,
                             spatial_scale=scale, sampling_ratio=self.sampling_ratio,
                             aligned=self.aligned)
    if inner["gt"] is not None:
      out["mask"] = self._training_masks(head, pool, inner, jnp.asarray(targets["masks"]))
    if not train:
      found = out["detections"]
      logits = head(pool(jax.lax.stop_gradient(found["boxes"])))
      own = jnp.take_along_axis(logits, found["labels"][:, :, None, None, None], axis=-1)
      out["detections"] = {**found, "masks": jax.nn.sigmoid(own[..., 0])}
    return out

  def _training_masks(self, head, pool, inner, gt_masks) -> dict:
    count = self.mask_rois_per_image or math.ceil(self.roi_batch_size * self.roi_positive_fraction)
    gt = inner["gt"]
    index, valid = jax.vmap(functools.partial(_select_positive, count=count))(inner["roi_labels"])
    rois = jnp.take_along_axis(inner["rois"], index[..., None], axis=1)
    classes = jnp.take_along_axis(inner["roi_labels"], index, axis=1) - 1
    gt_index = jax.vmap(lambda r, b, v: match(r, b, v)[0])(rois, gt["boxes"], gt["valid"])
    size = 2 * self.mask_roi_size
    targets = jax.vmap(functools.partial(mask_targets, size=size))(gt_masks, gt_index, rois)
    logits = head(pool(jax.lax.stop_gradient(rois)))
    return {"logits": logits, "classes": jnp.where(valid, classes, 0), "targets": targets,
            "valid": valid}

  def _check_mask_options(self, targets, x) -> None:
    if self.mask_roi_size < 1 or self.mask_width < 1 or self.mask_num_convs < 0:
      raise ValueError(f"mask_roi_size, mask_width, mask_num_convs: expected >= 1, >= 1, >= 0, "
                       f"got {self.mask_roi_size}, {self.mask_width}, {self.mask_num_convs}")
    if self.mask_rois_per_image < 0:
      raise ValueError(f"mask_rois_per_image: expected >= 0 (0: all positives), got "
                       f"{self.mask_rois_per_image}")
    if not self.use_rpn:
      raise ValueError("use_rpn: Mask R-CNN is built on Faster R-CNN; expected True, got False")
    if targets is None:
      return
    masks = targets.get("masks") if isinstance(targets, dict) else None
    expected = (x.shape[0], jnp.shape(targets["boxes"])[1], *x.shape[1:3])
    if masks is None or tuple(jnp.shape(masks)) != expected:
      raise ValueError(f"targets['masks']: expected the instance masks of shape {expected} "
                       f"[B, N, H, W], got {None if masks is None else tuple(jnp.shape(masks))}")


_MASK_OPTIONS = frozenset({"mask_roi_size", "mask_width", "mask_num_convs", "mask_feature_level",
                           "mask_rois_per_image"})
register_model("mask_rcnn", functools.partial(_rcnn, True, module=MaskRCNN),
               _OPTIONS | _MASK_OPTIONS)
