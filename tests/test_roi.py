"""RoIAlign and RoI pooling: hand-computed cases (borders, aligned both ways, adaptive and fixed
sampling, roi_pool's rounding and float32 bin edges, gradients at ties) and memory that grows with
RoIs x bins x C. Comparisons with torchvision itself: tests/test_torchvision_ops.py."""

import functools

import jax
import numpy as np
import pytest

from jaxvision.ops import roi_align, roi_pool

# f(y, x) = 4y + x + 1 on a 4 x 4 map: bilinear interpolation of it is exact inside the map.
RAMP = (4 * np.arange(4)[:, None] + np.arange(4)[None, :] + 1).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("output_size", "spatial_scale", "sampling_ratio",
                                             "aligned", "max_sampling_ratio"))
def align(features, boxes, output_size=1, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
          max_sampling_ratio=None):
  return roi_align(features, boxes, output_size, spatial_scale, sampling_ratio, aligned,
                   max_sampling_ratio=max_sampling_ratio)


pool = jax.jit(roi_pool, static_argnames=("output_size", "spatial_scale"))


def on_ramp(fn, box, **kw):
  out = fn(RAMP[None, :, :, None], np.asarray([[box]], np.float32), **kw)
  return np.asarray(out)[0, 0, ..., 0]


@pytest.mark.parametrize("box,kw,expected", [
    # Samples at 0.5 and 1.5 on each axis: the mean is f(1, 1) = 6.
    ((0, 0, 2, 2), dict(sampling_ratio=2), 6.0),
    # aligned: the box moves by -0.5, samples at 0 and 1: f(0.5, 0.5) = 3.5.
    ((0, 0, 2, 2), dict(sampling_ratio=2, aligned=True), 3.5),
    # spatial_scale halves the box to the case above.
    ((0, 0, 4, 4), dict(sampling_ratio=2, spatial_scale=0.5), 6.0),
    # Crossing the border, fixed 2 x 2 samples at 3 and 5: 5 > W is outside (zero); the sample
    # at 3 is clamped to the last cell: f(3, 3) / 4 = 16 / 4.
    ((2, 2, 6, 6), dict(sampling_ratio=2), 4.0),
    # A sample exactly on the far edge (4.0 = W) counts, clamped to the last cell.
    ((3, 3, 5, 5), dict(sampling_ratio=1), 16.0),
    # ... and one exactly at -1 counts (clamped to 0: f(0, 0) = 1); at -2 it is zero.
    ((-2, -2, 0, 0), dict(sampling_ratio=1), 1.0),
    ((-3, -3, -1, -1), dict(sampling_ratio=1), 0.0),
    # Adaptive: ceil(6 / 1) = 6 samples per axis at 0.5 ... 5.5; 0.5, 1.5, 2.5 inside, 3.5 clamped
    # to 3, 4.5 and 5.5 outside: sum over the 4 x 4 valid pairs of 4y + x + 1 = 166, / 36.
    # (max_sampling_ratio: the box is larger than the map, beyond the default bound of 5.)
    ((0, 0, 6, 6), dict(sampling_ratio=-1, max_sampling_ratio=6), 166 / 36),
    # The same box with fixed 2 x 2 samples (1.5 and 4.5): f(1.5, 1.5) / 4.
    ((0, 0, 6, 6), dict(sampling_ratio=2), 8.5 / 4),
    # Not aligned, a 0.2-pixel box is widened to 1 pixel: one sample at 1.5 -> f(1.5, 1.5).
    ((1, 1, 1.2, 1.2), dict(sampling_ratio=-1), 8.5),
    # aligned keeps its 0.2 pixels: start 0.5, one sample at 0.6 -> f(0.6, 0.6) = 4.
    ((1, 1, 1.2, 1.2), dict(sampling_ratio=-1, aligned=True), 4.0),
])
def test_roi_align_hand_computed(box, kw, expected):
  assert on_ramp(align, box, **kw)[0, 0] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_roi_align_bins_and_axes():
  # 2 x 2 bins of 2 pixels, one sample each at 1 and 3: f at (1, 1), (1, 3), (3, 1), (3, 3).
  np.testing.assert_allclose(on_ramp(align, (0, 0, 4, 4), output_size=2, sampling_ratio=1),
                             [[6, 8], [14, 16]], rtol=1e-6)
  # A wide box: y from 0 to 2 (one bin, samples 0.5 and 1.5: mean 1), x from 0 to 4 (two
  # bins: samples 0.5, 1.5 -> mean 1; 2.5, 3.5 -> 3.5 is clamped to 3: mean 2.75).
  out = align(RAMP[None, :, :, None], np.array([[[0, 0, 4, 2]]], np.float32), output_size=(1, 2),
              sampling_ratio=2)
  np.testing.assert_allclose(np.asarray(out)[0, 0, :, :, 0], [[4 + 1 + 1, 4 + 2.75 + 1]],
                             rtol=1e-6)


def test_roi_align_is_batched_per_image_and_per_channel():
  features = np.stack([np.stack([RAMP, -RAMP], -1), np.stack([2 * RAMP, RAMP], -1)])
  boxes = np.array([[[0, 0, 2, 2], [2, 2, 6, 6]], [[0, 0, 2, 2], [0, 0, 4, 4]]], np.float32)
  out = np.asarray(align(features, boxes, sampling_ratio=2))
  assert out.shape == (2, 2, 1, 1, 2)
  np.testing.assert_allclose(out[..., 0, 0, :], [[[6, -6], [4, -4]], [[12, 6], [2 * 11, 11]]],
                             rtol=1e-6)


def random_case(seed, height=5, width=7, boxes_per_image=6, reach=3.0, scale=0.5):
  rs = np.random.RandomState(seed)
  features = rs.randn(2, height, width, 2).astype(np.float32)
  lo = rs.uniform(-reach, [width / scale, height / scale], (2, boxes_per_image, 2))
  size = rs.uniform(0.0, 1.5 * max(height, width) / scale, (2, boxes_per_image, 2))
  size[:, 0] = 0.3  # a sliver
  return features, np.concatenate([lo, lo + size], -1).astype(np.float32)


def test_roi_align_default_bound_covers_boxes_inside_the_map():
  features, _ = random_case(0)
  boxes = np.array([[[0, 0, 14, 10], [1, 2, 13, 9]]] * 2, np.float32)  # the whole 7 x 5 map
  np.testing.assert_array_equal(
      align(features, boxes, output_size=(2, 3), spatial_scale=0.5),
      align(features, boxes, output_size=(2, 3), spatial_scale=0.5, max_sampling_ratio=16))


@pytest.mark.parametrize("side", [7, 14, 21, 35, 49, 63])
def test_adaptive_sampling_counts_are_exact_quotients(side):
  # A side of k * 7 cells in 7 bins takes k samples per bin: ceil(14 / 7) is 2, although
  # 14 * fl(1 / 7) (XLA's rewrite of the division) is 2.0000002.
  rs = np.random.RandomState(side)
  features = rs.randn(1, 64, 64, 3).astype(np.float32)
  boxes = np.array([[[0.5, 1.0, 0.5 + side, 1.0 + side]]], np.float32)
  np.testing.assert_allclose(align(features, boxes, output_size=7, max_sampling_ratio=10),
                             align(features, boxes, output_size=7, sampling_ratio=side // 7),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("box,kw,expected", [
    # Corners 0..3 inclusive: 4 x 4 cells in 2 x 2 bins of 2.
    ((0, 0, 3, 3), dict(output_size=2), [[6, 8], [14, 16]]),
    # Rounding halves away from zero: 0.5 -> 1 and 2.5 -> 3, the bin is cells 1..3: max f(3, 3).
    # (Half to even would give cells 0..2 and 11.)
    ((1, 1, 5, 5), dict(output_size=1, spatial_scale=0.5), [[16]]),
    # Crossing the border: 6 cells in bins of 3: [2, 5) clamps to [2, 4), [5, 8) is empty -> 0.
    ((2, 2, 7, 7), dict(output_size=2), [[16, 0], [0, 0]]),
    # Starting before the map: cells -3..0, clamped to cell 0.
    ((-3, -3, 0, 0), dict(output_size=1), [[1]]),
    # A one-cell RoI over 2 x 2 bins of 0.5: floor / ceil make every bin that cell.
    ((0, 0, 0, 0), dict(output_size=2), [[1, 1], [1, 1]]),
    # 3 cells (1..3) over 2 bins of 1.5: [1, 3) and [2, 4) overlap in cell 2.
    ((1, 0, 3, 0), dict(output_size=(1, 2)), [[3, 4]]),
])
def test_roi_pool_hand_computed(box, kw, expected):
  np.testing.assert_array_equal(on_ramp(pool, box, **kw), np.asarray(expected, np.float32))


@pytest.mark.parametrize("bins", [3, 7, 11, 13, 14])
def test_roi_pool_bin_edges_are_torchvisions_float32_edges(bins):
  # On f(x) = x a bin's max is its last column (end - 1); on f(x) = -x, minus its first.
  # Expected: torchvision's float32 arithmetic, floor(p * fl(n / bins)) and
  # ceil((p + 1) * fl(n / bins)), which is not the exact rational one for some n (57 in 7).
  n = np.arange(1, 301)
  ramp = np.arange(320, dtype=np.float32)[None, None, :, None]
  boxes = np.stack([np.zeros_like(n), np.zeros_like(n), n - 1, np.zeros_like(n)], -1)[None]
  boxes = boxes.astype(np.float32)
  last = np.asarray(pool(ramp, boxes, output_size=(1, bins)))[0, :, 0, :, 0]
  first = -np.asarray(pool(-ramp, boxes, output_size=(1, bins)))[0, :, 0, :, 0]
  size = n.astype(np.float32) / np.float32(bins)
  p = np.arange(bins, dtype=np.float32)
  np.testing.assert_array_equal(first, np.floor(p * size[:, None]))
  np.testing.assert_array_equal(last + 1, np.ceil((p + 1) * size[:, None]))


def test_roi_pool_gradient_goes_to_the_first_maximum_of_each_bin():
  features = np.zeros((1, 4, 4, 1), np.float32)
  features[0, 1:3, 1:3, 0] = 5.0  # four tied maxima in the 2 x 2 bin
  boxes = np.array([[[1, 1, 2, 2], [0, 0, 3, 3]]], np.float32)
  g = jax.grad(lambda f: pool(f, boxes, output_size=1).sum())(features)
  want = np.zeros((4, 4), np.float32)
  want[1, 1] = 2.0  # the first (row-major) of the ties, once per RoI
  np.testing.assert_array_equal(np.asarray(g)[0, :, :, 0], want)


def temp_bytes(fn, rois, grad):
  f = jax.ShapeDtypeStruct((1, 32, 32, 16), np.float32)
  b = jax.ShapeDtypeStruct((1, rois, 4), np.float32)
  g = (lambda f, b: jax.grad(lambda f: fn(f, b, 7).sum())(f)) if grad else (lambda f, b: fn(f, b, 7))
  return jax.jit(g).lower(f, b).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("grad", [False, True])
def test_roi_pool_memory_grows_with_rois_times_bins_not_with_the_map(grad):
  # 64 more RoIs x 49 bins x 16 channels: 200 KB per float32 array of that shape. A dense mask
  # per RoI (RoIs x bins x H x W x C) would add 36 MB.
  per_array = 64 * 49 * 16 * 4
  assert temp_bytes(roi_pool, 128, grad) - temp_bytes(roi_pool, 64, grad) < 8 * per_array


def test_roi_gradients_reach_the_features():
  features, boxes = random_case(3)
  for fn in (lambda f: align(f, boxes, output_size=2, sampling_ratio=2),
             lambda f: pool(f, boxes, output_size=2)):
    g = jax.grad(lambda f: fn(f).sum())(features)
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0


@pytest.mark.parametrize("fn", [roi_align, roi_pool])
def test_bad_inputs_are_named(fn):
  f = np.zeros((2, 4, 4, 1), np.float32)
  with pytest.raises(ValueError, match=r"features: expected NHWC feature maps \[B, H, W, C\], "
                                       r"got shape \(4, 4, 1\)"):
    fn(f[0], np.zeros((2, 1, 4)), 2)
  with pytest.raises(ValueError, match=r"boxes: expected \(x1, y1, x2, y2\) boxes \[2, K, 4\] "
                                       r"\(K per image\), got shape \(3, 4\)"):
    fn(f, np.zeros((3, 4)), 2)
  with pytest.raises(ValueError, match=r"output_size: expected a positive int or a pair of them, "
                                       r"got \(2, 0\)"):
    fn(f, np.zeros((2, 1, 4)), (2, 0))
