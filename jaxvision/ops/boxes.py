"""Box formats, areas, IoU and GIoU: pure jnp, any leading batch axes, jit-able.

Formats (last axis of size 4):
  yxyx: (ymin, xmin, ymax, xmax), normalised to [0, 1] (the TFDS / batch convention);
  xyxy: (x1, y1, x2, y2) in pixels (torchvision's convention);
  cxcywh: (cx, cy, w, h).
Areas and IoU follow `torchvision.ops.box_area` / `box_iou`: no +1 pixel convention, no
epsilon (two empty boxes have IoU 0 / 0 = nan, as in torchvision). They only need corner
boxes, so they work on yxyx and xyxy boxes alike (the product of the sides is the same).

Like torchvision's `_upcast`, areas, IoU and GIoU first widen narrow boxes so that sides and
areas cannot overflow: float16 / bfloat16 -> float32; int8 / uint8 / bool -> int32; wider
integers -> int64 under `jax_enable_x64`, else int32 (exact up to areas of 2**31 - 1, i.e.
sides up to 46340). Integer boxes give integer areas and float IoUs.
A box with a NaN coordinate has a NaN area, and NaN IoU / GIoU with every box (NaN propagates
through min and max); the format conversions keep the input dtype and propagate NaN too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_boxes(boxes, name: str = "boxes"):
  boxes = jnp.asarray(boxes)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"{name}: expected boxes [..., 4], got shape {tuple(boxes.shape)}")
  return boxes


def upcast(boxes):
  """`boxes` in a dtype wide enough for their areas (see the module docstring)."""
  dtype = jnp.dtype(boxes.dtype)
  if jnp.issubdtype(dtype, jnp.floating):
    return boxes if dtype.itemsize >= 4 else boxes.astype(jnp.float32)
  wide = jnp.int64 if jax.config.jax_enable_x64 and dtype.itemsize > 1 else jnp.int32
  return boxes if dtype == wide else boxes.astype(wide)


def _corners(boxes, name: str = "boxes"):
  return upcast(_check_boxes(boxes, name))


def yxyx_to_xyxy(boxes, height, width):
  """Normalised (ymin, xmin, ymax, xmax) -> pixel (x1, y1, x2, y2) in an image `height` x `width`.

  `height` and `width` are scalars or arrays broadcasting against `boxes[..., 0]`.
  """
  boxes = _check_boxes(boxes)
  h, w = jnp.asarray(height, boxes.dtype), jnp.asarray(width, boxes.dtype)
  ymin, xmin, ymax, xmax = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([xmin * w, ymin * h, xmax * w, ymax * h], axis=-1)


def xyxy_to_yxyx(boxes, height, width):
  """Pixel (x1, y1, x2, y2) -> normalised (ymin, xmin, ymax, xmax); inverse of yxyx_to_xyxy."""
  boxes = _check_boxes(boxes)
  h, w = jnp.asarray(height, boxes.dtype), jnp.asarray(width, boxes.dtype)
  x1, y1, x2, y2 = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([y1 / h, x1 / w, y2 / h, x2 / w], axis=-1)


def xyxy_to_cxcywh(boxes):
  """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
  x1, y1, x2, y2 = jnp.moveaxis(_check_boxes(boxes), -1, 0)
  return jnp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(boxes):
  """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
  cx, cy, w, h = jnp.moveaxis(_check_boxes(boxes), -1, 0)
  return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def yxyx_to_cxcywh(boxes):
  """(ymin, xmin, ymax, xmax) -> (cx, cy, w, h) in the same units."""
  return xyxy_to_cxcywh(_check_boxes(boxes)[..., jnp.array([1, 0, 3, 2])])


def cxcywh_to_yxyx(boxes):
  """(cx, cy, w, h) -> (ymin, xmin, ymax, xmax) in the same units."""
  return cxcywh_to_xyxy(boxes)[..., jnp.array([1, 0, 3, 2])]


def area(boxes):
  """Area of corner boxes [..., 4] -> [...], `(c2 - c0) * (c3 - c1)` (negative if inverted),
  in the upcast dtype (torchvision's `box_area`)."""
  boxes = _corners(boxes)
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection_union(a, b):
  lo = jnp.maximum(a[..., :2], b[..., :2])
  hi = jnp.minimum(a[..., 2:], b[..., 2:])
  wh = jnp.maximum(hi - lo, 0)
  inter = wh[..., 0] * wh[..., 1]
  return inter, area(a) + area(b) - inter


def iou(a, b):
  """IoU of corresponding corner boxes: `a` and `b` [..., 4] broadcast -> [...]."""
  inter, union = _intersection_union(_corners(a, "a"), _corners(b, "b"))
  return inter / union


def box_iou(a, b):
  """Pairwise IoU of corner boxes `a` [..., N, 4] and `b` [..., M, 4] -> [..., N, M]."""
  a, b = _check_boxes(a, "a"), _check_boxes(b, "b")
  return iou(a[..., :, None, :], b[..., None, :, :])


def giou(a, b):
  """Generalised IoU (Rezatofighi et al. 2019) of corresponding corner boxes -> [...]."""
  a, b = _corners(a, "a"), _corners(b, "b")
  inter, union = _intersection_union(a, b)
  lo = jnp.minimum(a[..., :2], b[..., :2])
  hi = jnp.maximum(a[..., 2:], b[..., 2:])
  wh = jnp.maximum(hi - lo, 0)
  hull = wh[..., 0] * wh[..., 1]
  return inter / union - (hull - union) / hull


def generalized_box_iou(a, b):
  """Pairwise GIoU of `a` [..., N, 4] and `b` [..., M, 4] -> [..., N, M] (torchvision's name)."""
  a, b = _check_boxes(a, "a"), _check_boxes(b, "b")
  return giou(a[..., :, None, :], b[..., None, :, :])


def clip_yxyx(boxes):
  """Clips normalised (ymin, xmin, ymax, xmax) boxes to the image, [0, 1]."""
  return jnp.clip(_check_boxes(boxes), 0.0, 1.0)


def clip_xyxy(boxes, height, width):
  """Clips pixel (x1, y1, x2, y2) boxes to [0, width] x [0, height] (scalars; torchvision's
  `clip_boxes_to_image`)."""
  boxes = _check_boxes(boxes)
  hi = jnp.stack([jnp.asarray(width, boxes.dtype), jnp.asarray(height, boxes.dtype)] * 2, -1)
  return jnp.clip(boxes, 0, hi)
