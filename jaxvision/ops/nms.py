"""Non-maximum suppression with static output shapes: works under jit and vmap.

Semantics are those of `torchvision.ops.nms` and `batched_nms`:
- boxes are visited by decreasing score; a box is kept unless a kept box of higher rank
  overlaps it with IoU *strictly greater* than `iou_threshold`;
- IoU is `inter / (area_i + area_j - inter)` with no +1 and no epsilon, computed in the
  boxes' dtype in the same order as torchvision's CPU kernel (0 / 0 = nan never suppresses);
- the IoU (in the boxes' dtype) is compared with the threshold as a real number, as C++
  compares a float with a double: a Python-number threshold is rounded down to the boxes'
  dtype, so an IoU of float32(1/3) > 1/3 suppresses at threshold 1/3 as in torchvision;
- equal scores keep their input order (a stable sort). Current torchvision sorts with
  `stable=True` in its CPU kernel (and its CUDA sort is stable); releases whose CPU kernel
  called `scores.sort(0, descending=True)` used `std::sort`, whose tie order is
  implementation-defined beyond 16 boxes (insertion sort, i.e. stable, up to 16);
- the kept indices come sorted by decreasing score.
Corner boxes may be (x1, y1, x2, y2) or (ymin, xmin, ymax, xmax): the IoU is the same.
Boxes are upcast first (`boxes.upcast`: float16 -> float32, small integers -> int32), so the
IoU is computed in float32 (or wider) and the threshold is rounded to the IoU's dtype.
NaN: a box with a NaN coordinate has IoU NaN with every box, so it neither suppresses nor is
suppressed (kept if its score passes); a NaN score is never kept and never suppresses.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.ops.boxes import iou, upcast


def _check(boxes, scores, max_output_size):
  boxes, scores = jnp.asarray(boxes), jnp.asarray(scores)
  if boxes.ndim != 2 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes: expected shape [N, 4], got {tuple(boxes.shape)}")
  if scores.shape != boxes.shape[:1]:
    raise ValueError(f"scores: expected shape ({boxes.shape[0]},) to match boxes, got "
                     f"{tuple(scores.shape)}")
  try:
    size = operator.index(max_output_size)
  except TypeError:
    size = -1
  if size < 0:
    raise ValueError(f"max_output_size: expected a static int >= 0, got {max_output_size!r}")
  return upcast(boxes), scores, size


def _exact_threshold(threshold, dtype):
  """The largest `dtype` value t' <= threshold: for x of `dtype`, x > t' iff x > threshold."""
  if isinstance(threshold, jax.Array) or not np.isscalar(threshold):
    return threshold  # traced or an array: compared in its own dtype
  t = np.asarray(threshold, dtype)
  if np.isfinite(t) and float(t) > float(threshold):
    t = np.nextafter(t, np.asarray(-np.inf, dtype))
  return t


def nms(boxes, scores, iou_threshold, max_output_size: int, score_threshold=-jnp.inf):
  """Greedy NMS of `boxes` [N, 4] with `scores` [N].

  Boxes with `score <= score_threshold` are neither kept nor suppress others.

  Returns:
    (indices int32 [max_output_size], valid bool [max_output_size]): the kept boxes' indices
    into `boxes`, by decreasing score, then padding (index 0, valid False).
  """
  boxes, scores, size = _check(boxes, scores, max_output_size)
  n = boxes.shape[0]
  if n == 0 or size == 0:
    return jnp.zeros((size,), jnp.int32), jnp.zeros((size,), bool)
  iou_dtype = boxes.dtype if jnp.issubdtype(boxes.dtype, jnp.floating) else jnp.result_type(float)
  iou_threshold = _exact_threshold(iou_threshold, iou_dtype)
  score_threshold = _exact_threshold(score_threshold, scores.dtype)
  order = jnp.argsort(scores, descending=True, stable=True)
  sorted_boxes = boxes[order]
  rank = jnp.arange(n)

  def cond(carry):
    i, _, count = carry
    return (i < n) & (count < size)

  def body(carry):
    i, keep, count = carry
    overlap = iou(sorted_boxes[i], sorted_boxes) > iou_threshold
    suppress = keep[i] & overlap & (rank > i)
    return i + 1, keep & ~suppress, count + keep[i]

  candidates = scores[order] > score_threshold
  _, keep, _ = jax.lax.while_loop(cond, body, (0, candidates, jnp.int32(0)))
  # Positions before the loop's stop are final; after it, at most `size` are needed anyway.
  (pos,) = jnp.nonzero(keep, size=size, fill_value=0)
  valid = jnp.arange(size) < jnp.sum(keep)
  return jnp.where(valid, order[pos], 0).astype(jnp.int32), valid


def batched_nms(boxes, scores, classes, iou_threshold, max_output_size: int,
                score_threshold=-jnp.inf):
  """Class-aware NMS: boxes of different `classes` [N] never suppress each other.

  torchvision's coordinate trick: every box is shifted by `class * (max coordinate + 1)` and
  one NMS runs over all of them (torchvision switches to a per-class loop above 4,000 boxes on
  CPU, whose IoU values can differ from the shifted ones in the last bits).
  """
  boxes, scores, size = _check(boxes, scores, max_output_size)
  classes = jnp.asarray(classes)
  if classes.shape != scores.shape:
    raise ValueError(f"classes: expected shape {tuple(scores.shape)} to match scores, got "
                     f"{tuple(classes.shape)}")
  if boxes.shape[0] == 0:
    return nms(boxes, scores, iou_threshold, size, score_threshold)
  offsets = classes.astype(boxes.dtype) * (boxes.max() + jnp.ones((), boxes.dtype))
  return nms(boxes + offsets[:, None], scores, iou_threshold, size, score_threshold)
