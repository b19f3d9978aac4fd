"""RoIAlign and RoI pooling: hand-computed cases (borders, aligned both ways, adaptive and fixed
sampling, roi_pool's rounding) and a line-by-line numpy transcription of torchvision's CPU
kernels on random boxes."""

import functools
import math

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


# Line-by-line transcription of torchvision/csrc/ops/cpu/roi_align_kernel.cpp (forward).


def _bilinear(f, y, x):
  height, width = f.shape[:2]
  if y < -1.0 or y > height or x < -1.0 or x > width:
    return np.zeros(f.shape[2:])
  y, x = max(y, 0.0), max(x, 0.0)
  y_low, x_low = int(y), int(x)
  if y_low >= height - 1:
    y_high = y_low = height - 1
    y = float(y_low)
  else:
    y_high = y_low + 1
  if x_low >= width - 1:
    x_high = x_low = width - 1
    x = float(x_low)
  else:
    x_high = x_low + 1
  ly, lx = y - y_low, x - x_low
  hy, hx = 1.0 - ly, 1.0 - lx
  return (hy * hx * f[y_low, x_low] + hy * lx * f[y_low, x_high] + ly * hx * f[y_high, x_low] +
          ly * lx * f[y_high, x_high])


def reference_roi_align(f, boxes, out_hw, scale, sampling_ratio, aligned):
  out = np.zeros((len(boxes), *out_hw, f.shape[-1]))
  offset = 0.5 if aligned else 0.0
  for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
    start_w, start_h = x1 * scale - offset, y1 * scale - offset
    roi_w, roi_h = x2 * scale - offset - start_w, y2 * scale - offset - start_h
    if not aligned:
      roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_h, bin_w = roi_h / out_hw[0], roi_w / out_hw[1]
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out_hw[0])
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out_hw[1])
    count = max(grid_h * grid_w, 1)
    for ph in range(out_hw[0]):
      for pw in range(out_hw[1]):
        total = 0.0
        for iy in range(grid_h):
          y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
          for ix in range(grid_w):
            x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
            total = total + _bilinear(f, y, x)
        out[k, ph, pw] = total / count
  return out


def random_case(seed, height=5, width=7, boxes_per_image=6, reach=3.0, scale=0.5):
  rs = np.random.RandomState(seed)
  features = rs.randn(2, height, width, 2).astype(np.float32)
  lo = rs.uniform(-reach, [width / scale, height / scale], (2, boxes_per_image, 2))
  size = rs.uniform(0.0, 1.5 * max(height, width) / scale, (2, boxes_per_image, 2))
  size[:, 0] = 0.3  # a sliver
  return features, np.concatenate([lo, lo + size], -1).astype(np.float32)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
def test_roi_align_matches_torchvision_kernel_transcription(aligned, sampling_ratio):
  features, boxes = random_case(sampling_ratio + 1 + 3 * aligned)
  out = align(features, boxes, output_size=(2, 3), spatial_scale=0.5,
              sampling_ratio=sampling_ratio, aligned=aligned, max_sampling_ratio=16)
  for b in range(2):
    want = reference_roi_align(features[b], boxes[b], (2, 3), 0.5, sampling_ratio, aligned)
    np.testing.assert_allclose(np.asarray(out[b]), want, rtol=1e-4, atol=1e-5)


def test_roi_align_default_bound_covers_boxes_inside_the_map():
  features, _ = random_case(0)
  boxes = np.array([[[0, 0, 14, 10], [1, 2, 13, 9]]] * 2, np.float32)  # the whole 7 x 5 map
  out = align(features, boxes, output_size=(2, 3), spatial_scale=0.5)
  for b in range(2):
    np.testing.assert_allclose(np.asarray(out[b]), reference_roi_align(
        features[b], boxes[b], (2, 3), 0.5, -1, False), rtol=1e-4, atol=1e-5)


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


def reference_roi_pool(f, boxes, out_hw, scale):
  """torchvision/csrc/ops/cpu/roi_pool_kernel.cpp (forward)."""
  height, width = f.shape[:2]
  out = np.zeros((len(boxes), *out_hw, f.shape[-1]), np.float32)
  for k, box in enumerate(np.asarray(boxes, np.float32)):
    x1, y1, x2, y2 = (int(np.sign(v) * np.floor(abs(v) + 0.5)) for v in box * np.float32(scale))
    roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    bin_h = np.float32(roi_h) / np.float32(out_hw[0])
    bin_w = np.float32(roi_w) / np.float32(out_hw[1])
    for ph in range(out_hw[0]):
      for pw in range(out_hw[1]):
        hs = min(max(int(np.floor(np.float32(ph) * bin_h)) + y1, 0), height)
        he = min(max(int(np.ceil(np.float32(ph + 1) * bin_h)) + y1, 0), height)
        ws = min(max(int(np.floor(np.float32(pw) * bin_w)) + x1, 0), width)
        we = min(max(int(np.ceil(np.float32(pw + 1) * bin_w)) + x1, 0), width)
        if he > hs and we > ws:
          out[k, ph, pw] = f[hs:he, ws:we].max(axis=(0, 1))
  return out


def test_roi_pool_matches_torchvision_kernel_transcription():
  features, boxes = random_case(7, boxes_per_image=10)
  out = pool(features, boxes, output_size=(2, 3), spatial_scale=0.5)
  for b in range(2):
    np.testing.assert_array_equal(np.asarray(out[b]),
                                  reference_roi_pool(features[b], boxes[b], (2, 3), 0.5))


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
