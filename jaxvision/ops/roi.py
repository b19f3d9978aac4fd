"""RoI pooling (Fast R-CNN) and RoIAlign (Mask R-CNN) on NHWC feature maps, batched and jit-able.

Semantics are those of `torchvision.ops.roi_pool` and `torchvision.ops.roi_align`; boxes are
(x1, y1, x2, y2) in the coordinates of the image that `spatial_scale` maps onto the features
(1 / stride), one set of K boxes per image: `features` [B, H, W, C], `boxes` [B, K, 4] ->
[B, K, out_h, out_w, C].

Both are computed without gathers. RoIAlign's bilinear samples lie on a grid that is a product
of rows and columns, so the average over a bin is separable: out = A_y F A_x^T with per-RoI
interpolation matrices A_y [out_h, H] and A_x [out_w, W] (two dense contractions, fast on every
backend). RoI max pooling is a max over a rectangle: a masked max over columns, then over rows.

`sampling_ratio <= 0` (adaptive) takes ceil(roi_size / out_size) samples per bin as torchvision
does; the number varies per RoI, so under jit it is bounded by `max_sampling_ratio` (default:
enough for any box inside the feature map; boxes reaching further beyond it get at most that
many samples).
"""

from __future__ import annotations

import math
import operator

import jax
import jax.numpy as jnp


def _pair(value, name: str) -> tuple[int, int]:
  pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
  try:
    pair = tuple(operator.index(v) for v in pair)
  except TypeError:
    pair = ()
  if len(pair) != 2 or min(pair) < 1:
    raise ValueError(f"{name}: expected a positive int or a pair of them, got {value!r}")
  return pair


def _check(features, boxes):
  features, boxes = jnp.asarray(features), jnp.asarray(boxes)
  if features.ndim != 4:
    raise ValueError(f"features: expected NHWC feature maps [B, H, W, C], got shape "
                     f"{tuple(features.shape)}")
  if boxes.ndim != 3 or boxes.shape[0] != features.shape[0] or boxes.shape[-1] != 4:
    raise ValueError(f"boxes: expected (x1, y1, x2, y2) boxes [{features.shape[0]}, K, 4] (K per "
                     f"image), got shape {tuple(boxes.shape)}")
  # Coordinates stay at least float32 (bfloat16 would round 300.0 to a multiple of 2).
  return features, boxes.astype(jnp.promote_types(boxes.dtype, jnp.float32))


def _bilinear_rows(coords, size: int):
  """torchvision's bilinear_interpolate along one axis: weights [..., size] of `coords` [...]
  (zero outside [-1, size])."""
  inside = (coords >= -1.0) & (coords <= size)
  c = jnp.maximum(coords, 0.0)
  low = jnp.floor(c).astype(jnp.int32)
  at_end = low >= size - 1
  low = jnp.where(at_end, size - 1, low)
  high = jnp.where(at_end, size - 1, low + 1)
  frac = jnp.where(at_end, 0.0, c - low)
  index = jnp.arange(size)
  w = ((1.0 - frac)[..., None] * (index == low[..., None]) +
       frac[..., None] * (index == high[..., None]))
  return jnp.where(inside[..., None], w, 0.0)


def _align_matrix(start, end, out: int, size: int, sampling_ratio: int, bound: int,
                  aligned: bool):
  """A [B, K, out, size]: the mean of each bin's bilinear sample weights along one axis."""
  length = end - start
  if not aligned:
    length = jnp.maximum(length, 1.0)
  bin_size = length / out
  if sampling_ratio > 0:
    n = jnp.full(length.shape, sampling_ratio, jnp.int32)
  else:
    n = jnp.clip(jnp.ceil(length / out), 0, bound).astype(jnp.int32)
  i = jnp.arange(bound)
  p = jnp.arange(out)
  nf = jnp.maximum(n, 1).astype(length.dtype)[..., None, None]
  coords = (start[..., None, None] + p[:, None] * bin_size[..., None, None] +
            (i + 0.5) * bin_size[..., None, None] / nf)  # [B, K, out, bound]
  w = _bilinear_rows(coords, size) * (i < n[..., None, None])[..., None]
  return jnp.sum(w, axis=-2) / nf


def roi_align(features, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False, *, max_sampling_ratio: int | None = None):
  """RoIAlign as `torchvision.ops.roi_align` (see the module doc for the layout).

  Args:
    features: [B, H, W, C].
    boxes: [B, K, 4] (x1, y1, x2, y2) before `spatial_scale`.
    output_size: int or (out_h, out_w).
    spatial_scale: maps box coordinates onto the feature map (1 / the feature stride).
    sampling_ratio: bilinear samples per bin along each axis; <= 0: ceil(roi size / output size)
      per RoI.
    aligned: shift the box by -0.5 pixel (pixel centres); False: torchvision's default, RoI
      sides clamped to at least 1.
    max_sampling_ratio: adaptive sampling's bound under jit (default ceil(side / output size)
      of the feature map, +1 for boxes that straddle its border).

  Returns:
    [B, K, out_h, out_w, C] in the features' dtype.
  """
  features, boxes = _check(features, boxes)
  out_h, out_w = _pair(output_size, "output_size")
  sampling_ratio = operator.index(sampling_ratio)
  _, height, width, _ = features.shape
  if sampling_ratio > 0:
    bound_h = bound_w = sampling_ratio
  elif max_sampling_ratio is None:
    bound_h, bound_w = math.ceil(height / out_h) + 1, math.ceil(width / out_w) + 1
  else:
    bound_h = bound_w = operator.index(max_sampling_ratio)
    if bound_h < 1:
      raise ValueError(f"max_sampling_ratio: expected an int >= 1, got {max_sampling_ratio!r}")
  offset = 0.5 if aligned else 0.0
  x1, y1, x2, y2 = jnp.moveaxis(boxes * spatial_scale - offset, -1, 0)
  a_y = _align_matrix(y1, y2, out_h, height, sampling_ratio, bound_h, aligned)
  a_x = _align_matrix(x1, x2, out_w, width, sampling_ratio, bound_w, aligned)
  a_y, a_x = a_y.astype(features.dtype), a_x.astype(features.dtype)
  rows = jnp.einsum("bkph,bhwc->bkpwc", a_y, features)
  return jnp.einsum("bkpwc,bkqw->bkpqc", rows, a_x)


def _round_half_away(x):
  """C's round(): halves away from zero (jnp.round rounds them to even)."""
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _pool_bins(start, end, out: int, size: int):
  """(bin starts, bin ends) [B, K, out] clamped to [0, size] as torchvision's roi_pool."""
  length = jnp.maximum(end - start + 1, 1).astype(jnp.float32)
  bin_size = length / out
  p = jnp.arange(out, dtype=jnp.float32)
  lo = jnp.floor(p * bin_size[..., None]).astype(jnp.int32) + start[..., None]
  hi = jnp.ceil((p + 1) * bin_size[..., None]).astype(jnp.int32) + start[..., None]
  return jnp.clip(lo, 0, size), jnp.clip(hi, 0, size)


def roi_pool(features, boxes, output_size, spatial_scale: float = 1.0):
  """Fast R-CNN's RoI max pooling as `torchvision.ops.roi_pool`.

  Box corners are scaled and rounded to feature cells (halves away from zero), the RoI
  (inclusive corners, at least 1 x 1) is divided into out_h x out_w bins of float size, bin
  edges are floored/ceiled and clamped to the map, and each bin takes the max of its cells
  (0 for an empty bin). The gradient reaches the max of each bin (split among exact ties).

  Args:
    features: [B, H, W, C].
    boxes: [B, K, 4] (x1, y1, x2, y2) before `spatial_scale`.
    output_size: int or (out_h, out_w).
    spatial_scale: maps box coordinates onto the feature map (1 / the feature stride).

  Returns:
    [B, K, out_h, out_w, C] in the features' dtype.
  """
  features, boxes = _check(features, boxes)
  out_h, out_w = _pair(output_size, "output_size")
  _, height, width, _ = features.shape
  corners = _round_half_away(boxes.astype(jnp.float32) * spatial_scale).astype(jnp.int32)
  x1, y1, x2, y2 = jnp.moveaxis(corners, -1, 0)
  h_lo, h_hi = _pool_bins(y1, y2, out_h, height)
  w_lo, w_hi = _pool_bins(x1, x2, out_w, width)
  rows, cols = jnp.arange(height), jnp.arange(width)
  in_h = (rows >= h_lo[..., None]) & (rows < h_hi[..., None])  # [B, K, out_h, H]
  in_w = (cols >= w_lo[..., None]) & (cols < w_hi[..., None])  # [B, K, out_w, W]
  low = jnp.array(-jnp.inf, features.dtype)
  # Max over the columns of each bin, then over its rows.
  by_cols = jnp.max(jnp.where(in_w[:, :, :, None, :, None], features[:, None, None], low),
                    axis=4)  # [B, K, out_w, H, C]
  pooled = jnp.max(jnp.where(in_h[:, :, :, None, :, None], by_cols[:, :, None], low),
                   axis=4)  # [B, K, out_h, out_w, C]
  empty = (h_hi <= h_lo)[..., :, None] | (w_hi <= w_lo)[..., None, :]
  return jnp.where(empty[..., None], jnp.zeros((), features.dtype), pooled)
