"""RoI pooling (Fast R-CNN) and RoIAlign (Mask R-CNN) on NHWC feature maps, batched and jit-able.

Semantics are those of `torchvision.ops.roi_pool` and `torchvision.ops.roi_align`; boxes are
(x1, y1, x2, y2) in the coordinates of the image that `spatial_scale` maps onto the features
(1 / stride), one set of K boxes per image: `features` [B, H, W, C], `boxes` [B, K, 4] ->
[B, K, out_h, out_w, C]. As in torchvision, neither has a gradient with respect to the boxes.

RoIAlign's bilinear samples lie on a grid that is a product of rows and columns, so each bin
reads the cells (row taps) x (column taps) with the product of their weights: the forward pass
gathers those cells and accumulates (O(RoIs x bins x taps x C) work, no dense matrix); the
backward pass scatters through the dense per-RoI interpolation matrices A_y [out_h, H] and
A_x [out_w, W] (dF = sum over RoIs of A_y^T G A_x: two contractions).

RoI max pooling takes, per bin and channel, the first maximum in row-major order (torchvision's
argmax, which also receives the whole gradient). A bin is a rectangle of any size, so the
maxima come from a 2-D sparse table (max and argmax of every 2^a x 2^b window, built once per
image): four overlapping windows cover any rectangle, and the output is a gather at the argmax
(memory O(RoIs x bins x C) plus the table, O(H W C log H log W) per image).

Bin sizes are float32 quotients as in torchvision's kernels. XLA rewrites `x / c` as
`x * (1 / c)` with a rounded reciprocal, which moves a floor or ceil of the result by one cell
in a few percent of RoIs (and a `ceil` sample count by one), so the divisions here go through
`_divide`, which XLA cannot rewrite. torchvision's float32 edges are not the exact rational
ones: a 57-cell RoI in 7 bins ends its last bin at 58 (7 * fl(57 / 7) rounds up), and so does
this module.

`sampling_ratio <= 0` (adaptive) takes ceil(roi_size / out_size) samples per bin as torchvision
does; the number varies per RoI, so under jit it is bounded by `max_sampling_ratio` (default:
enough for any box inside the feature map; boxes reaching further beyond it get at most that
many samples).
"""

from __future__ import annotations

import functools
import math
import operator

import jax
import jax.numpy as jnp
from jax import lax


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
  # Coordinates stay at least float32 (bfloat16 would round 300.0 to a multiple of 2); no
  # gradient reaches them (torchvision's ops have none either).
  boxes = boxes.astype(jnp.promote_types(boxes.dtype, jnp.float32))
  return features, lax.stop_gradient(boxes)


def _divide(x, divisor):
  """x / divisor rounded as one IEEE division: the divisor, broadcast to x's shape, passes an
  optimization barrier, so XLA cannot turn the division into a multiplication by 1 / divisor."""
  divisor = jnp.broadcast_to(jnp.asarray(divisor, x.dtype), x.shape)
  return x / lax.optimization_barrier(divisor)


# RoIAlign.


def _align_taps(start, length, out: int, size: int, sampling_ratio: int, bound: int):
  """Per bin along one axis: the cells that its bilinear samples read and their weights
  (divided by the number of samples along this axis), [B, K, out, 2 * bound] each; samples
  outside [-1, size] weigh 0 (torchvision's bilinear_interpolate)."""
  bin_size = _divide(length, out)
  if sampling_ratio > 0:
    n = jnp.full(length.shape, sampling_ratio, jnp.int32)
  else:
    n = jnp.clip(jnp.ceil(bin_size), 0, bound).astype(jnp.int32)
  count = jnp.maximum(n, 1).astype(length.dtype)[..., None, None]
  p = jnp.arange(out, dtype=length.dtype)[:, None]
  i = jnp.arange(bound, dtype=length.dtype)
  b = bin_size[..., None, None]
  coords = (start[..., None, None] + p * b) + _divide((i + 0.5) * b, count)  # [B, K, out, bound]
  valid = (jnp.arange(bound) < n[..., None, None]) & (coords >= -1.0) & (coords <= size)
  c = jnp.clip(coords, 0.0, size)
  low = jnp.floor(c).astype(jnp.int32)
  at_end = low >= size - 1
  low = jnp.where(at_end, size - 1, low)
  high = jnp.where(at_end, size - 1, low + 1)
  frac = jnp.where(at_end, 0.0, c - low)
  weight = jnp.where(valid, 1.0, 0.0) / count
  return (jnp.concatenate([low, high], -1),
          jnp.concatenate([(1.0 - frac) * weight, frac * weight], -1))


def _dense(cells, weights, size: int):
  """Taps [..., L] as a dense interpolation matrix [..., size]."""
  return jnp.sum(weights[..., None] * (cells[..., None] == jnp.arange(size)), axis=-2)


@jax.custom_vjp
def _separable_gather(features, rows, row_w, cols, col_w):
  """out[b, k, p, q] = sum_{a, j} row_w[b, k, p, a] col_w[b, k, q, j] F[b, rows[.., a], cols[.., j]]."""
  batch, _, width, channels = features.shape
  flat = features.reshape(batch, -1, channels)
  take = jax.vmap(lambda f, i: f[i])
  acc = jnp.promote_types(features.dtype, jnp.float32)

  def add_row_tap(a, out):
    r = lax.dynamic_index_in_dim(rows, a, -1, keepdims=False)[..., :, None] * width
    rw = lax.dynamic_index_in_dim(row_w, a, -1, keepdims=False)[..., :, None].astype(acc)
    for j in range(cols.shape[-1]):  # fused gather-multiply-adds, one per column tap
      w = rw * col_w[..., None, :, j].astype(acc)
      out = out + w[..., None] * take(flat, r + cols[..., None, :, j])
    return out

  out = jnp.zeros((*rows.shape[:3], cols.shape[2], channels), acc)
  return lax.fori_loop(0, rows.shape[-1], add_row_tap, out).astype(features.dtype)


def _separable_gather_fwd(features, rows, row_w, cols, col_w):
  return _separable_gather(features, rows, row_w, cols, col_w), (features, rows, row_w, cols,
                                                                 col_w)


def _separable_gather_bwd(res, g):
  features, rows, row_w, cols, col_w = res
  _, height, width, _ = features.shape
  acc = jnp.promote_types(features.dtype, jnp.float32)
  a_y, a_x = _dense(rows, row_w, height).astype(acc), _dense(cols, col_w, width).astype(acc)
  t = jnp.einsum("bkpqc,bkqw->bkpwc", g.astype(acc), a_x)
  grad = jnp.einsum("bkph,bkpwc->bhwc", a_y, t).astype(features.dtype)
  return grad, None, jnp.zeros_like(row_w), None, jnp.zeros_like(col_w)


_separable_gather.defvjp(_separable_gather_fwd, _separable_gather_bwd)


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
  h, w = y2 - y1, x2 - x1
  if not aligned:
    h, w = jnp.maximum(h, 1.0), jnp.maximum(w, 1.0)
  rows = _align_taps(y1, h, out_h, height, sampling_ratio, bound_h)
  cols = _align_taps(x1, w, out_w, width, sampling_ratio, bound_w)
  return _separable_gather(features, *rows, *cols)


# RoI max pooling.


def _round_half_away(x):
  """C's round(): halves away from zero (jnp.round rounds them to even)."""
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _pool_bins(start, end, out: int, size: int):
  """(bin starts, bin ends) [B, K, out] clamped to [0, size] as torchvision's roi_pool: the bin
  size is the float32 quotient (RoI cells) / out, floored and ceiled at each edge."""
  length = jnp.maximum(end - start + 1, 1).astype(jnp.float32)
  bin_size = _divide(length, out)[..., None]
  p = jnp.arange(out, dtype=jnp.float32)
  lo = jnp.floor(p * bin_size).astype(jnp.int32) + start[..., None]
  hi = jnp.ceil((p + 1) * bin_size).astype(jnp.int32) + start[..., None]
  return jnp.clip(lo, 0, size), jnp.clip(hi, 0, size)


def _strictly_later(v1, i1, v2, i2):
  """Combines two disjoint windows, the first wholly before the second in row-major order:
  ties keep the first (torchvision's strict `>` scan)."""
  later = v2 > v1
  return jnp.where(later, v2, v1), jnp.where(later, i2, i1)


def _first_max(v1, i1, v2, i2):
  """The larger of two (value, flat index) pairs of overlapping windows; on a tie the smaller
  index (the first in row-major order)."""
  second = (v2 > v1) | ((v2 == v1) & (i2 < i1))
  return jnp.where(second, v2, v1), jnp.where(second, i2, i1)


def _lowest(dtype):
  dtype = jnp.dtype(dtype)
  return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else jnp.iinfo(dtype).min


def _levels(size: int) -> int:
  return size.bit_length()  # windows of 1, 2, 4, ... <= size cells


def _window_table(arrays, fills, combine):
  """Sparse table of every array in `arrays` ([batch, H, W, C]): `combine` over the 2^a x 2^b
  window at each cell, [levels(H) * levels(W) * batch * H * W, C] (level-major; windows that
  reach past the map see `fills`). Columns are doubled first, then rows, so the two halves
  that `combine` sees are disjoint and in row-major order. Each doubling is one step of a scan
  (unrolled, the levels take XLA tens of seconds to compile)."""
  _, height, width, channels = arrays[0].shape

  def doubling(axis: int, size: int):
    def step(parts, shift):
      later = []
      for x, fill in zip(parts, fills):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (0, size)
        padded = jnp.pad(x, pad, constant_values=fill)
        later.append(lax.dynamic_slice_in_dim(padded, shift, size, axis=axis))
      parts = combine(*parts, *later)
      return parts, parts

    def table(parts, levels: int):
      shifts = 2 ** jnp.arange(levels - 1)
      _, grown = lax.scan(step, parts, shifts)
      return [jnp.concatenate([x[None], g]) for x, g in zip(parts, grown)]

    return table

  by_cols = doubling(2, width)(tuple(arrays), _levels(width))  # [levels(W), batch, H, W, C]
  by_rows = doubling(2, height)(tuple(by_cols), _levels(height))  # rows are axis 2 here too
  return [x.reshape(-1, channels) for x in by_rows]  # [levels(H), levels(W), batch, H, W, C]


def _window_rows(lo_h, hi_h, lo_w, hi_w, batch: int, height: int, width: int):
  """Rows in `_window_table` of the four windows that cover each bin [B, K, out_h, out_w]
  (anchored at the bin's two ends on each axis; any row of the table for an empty bin)."""
  level = lambda length, n: sum(((length >= 2 ** j).astype(jnp.int32) for j in range(1, n)),
                                jnp.zeros_like(length))
  a = level(hi_h - lo_h, _levels(height))[..., :, None]  # floor(log2) of the bin's height
  b = level(hi_w - lo_w, _levels(width))[..., None, :]
  base = ((a * _levels(width) + b) * batch + jnp.arange(batch)[:, None, None, None]) * height
  rows = []
  for y in (lo_h[..., :, None], hi_h[..., :, None] - 2 ** a):
    for x in (lo_w[..., None, :], hi_w[..., None, :] - 2 ** b):
      rows.append((base + jnp.clip(y, 0, height - 1)) * width + jnp.clip(x, 0, width - 1))
  return rows


@jax.custom_vjp
def _max_over_bins(features, lo_h, hi_h, lo_w, hi_w):
  """Max of every bin [B, K, out_h, out_w, C] (0 for an empty bin)."""
  batch, height, width, _ = features.shape
  (table,) = _window_table([features], [_lowest(features.dtype)],
                           lambda v1, v2: (jnp.maximum(v1, v2),))
  rows = _window_rows(lo_h, hi_h, lo_w, hi_w, batch, height, width)
  pooled = functools.reduce(jnp.maximum, [table[r] for r in rows])
  empty = (hi_h <= lo_h)[..., :, None] | (hi_w <= lo_w)[..., None, :]
  return jnp.where(empty[..., None], jnp.zeros((), features.dtype), pooled)


def _max_over_bins_fwd(features, lo_h, hi_h, lo_w, hi_w):
  return _max_over_bins(features, lo_h, hi_h, lo_w, hi_w), (features, lo_h, hi_h, lo_w, hi_w)


def _max_over_bins_bwd(res, g):
  """The whole gradient of a bin goes to its first maximum in row-major order (torchvision)."""
  features, lo_h, hi_h, lo_w, hi_w = res
  batch, height, width, channels = features.shape
  flat = jnp.broadcast_to((jnp.arange(height)[:, None] * width + jnp.arange(width))[..., None],
                          features.shape).astype(jnp.int32)
  values, index = _window_table([features, flat], [_lowest(features.dtype), height * width],
                                _strictly_later)
  rows = _window_rows(lo_h, hi_h, lo_w, hi_w, batch, height, width)
  _, argmax = functools.reduce(lambda p, q: _first_max(*p, *q),
                               [(values[r], index[r]) for r in rows])
  empty = (hi_h <= lo_h)[..., :, None] | (hi_w <= lo_w)[..., None, :]
  g = jnp.where(empty[..., None], jnp.zeros((), g.dtype), g).reshape(batch, -1, channels)
  scatter = jax.vmap(lambda i, u: jnp.zeros((height * width, channels), g.dtype).at[
      i, jnp.arange(channels)].add(u))
  grad = scatter(argmax.reshape(batch, -1, channels), g).reshape(features.shape)
  return grad.astype(features.dtype), None, None, None, None


_max_over_bins.defvjp(_max_over_bins_fwd, _max_over_bins_bwd)


def roi_pool(features, boxes, output_size, spatial_scale: float = 1.0):
  """Fast R-CNN's RoI max pooling as `torchvision.ops.roi_pool`.

  Box corners are scaled and rounded to feature cells (halves away from zero), the RoI
  (inclusive corners, at least 1 x 1) is divided into out_h x out_w bins of float32 size, bin
  edges are floored/ceiled and clamped to the map, and each bin takes the max of its cells
  (0 for an empty bin). The gradient reaches the first maximum of each bin in row-major order.

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
  batch, height, width, channels = features.shape
  corners = _round_half_away(boxes * spatial_scale).astype(jnp.int32)
  x1, y1, x2, y2 = jnp.moveaxis(corners, -1, 0)
  h_lo, h_hi = _pool_bins(y1, y2, out_h, height)
  w_lo, w_hi = _pool_bins(x1, x2, out_w, width)
  return _max_over_bins(features, h_lo, h_hi, w_lo, w_hi)
