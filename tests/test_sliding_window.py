"""Sliding-window detection: the window set, crop loop == fully convolutional, NMS of window
scores, training-crop labels, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.data import crops
from jaxvision.models import create_model
from jaxvision.models.sliding_window import (
    SlidingWindowDetector, crop_logits, detections, fcn_logits, window_boxes, window_scales)
from jaxvision.ops.crop import crop_and_resize

N = 18  # classifier input side


@pytest.fixture(scope="module")
def detector():
  # Unpadded 3x3 stages and 2x2 pools, 18 -> 16 -> 8 -> 6 -> 3 -> 1: total stride 4.
  model = create_model("window_cnn", num_classes=4, widths=(4, 6, 8))
  return SlidingWindowDetector(model, _random_variables(model, N), N)


def _random_variables(model, size: int) -> dict:
  """Random weights and non-trivial BatchNorm statistics (compiling `init` takes longer)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                             train=False))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    x = rng.normal(0, 0.5, leaf.shape).astype(np.float32)
    name = path[-1].key
    return np.abs(x) + 0.5 if name == "var" else 1 + 0.2 * x if name == "scale" else x
  return jax.tree_util.tree_map_with_path(fill, shapes)


# ------------------------------------------------------------------------------ window set


def test_window_set_on_hand_made_sizes():
  # w = 8, n = 4: factor 2, resized (5, 6): windows at resized 0..1 x 0..2 (stride 1).
  (s,) = window_scales((10, 13), [8], 4, 1)
  assert s.resized == (5, 6) and s.grid == (2, 3) and s.sampling_ratio == 2
  np.testing.assert_array_equal(s.boxes(), [[0, 0, 8, 8], [2, 0, 10, 8], [4, 0, 12, 8],
                                            [0, 2, 8, 10], [2, 2, 10, 10], [4, 2, 12, 10]])
  (s,) = window_scales((10, 13), [8], 4, 2)
  np.testing.assert_array_equal(s.boxes(), [[0, 0, 8, 8], [4, 0, 12, 8]])
  # w = 6: factor 1.5, resized (6, 8): 3 x 5 windows 1.5 pixels apart; the last ends at 12 <= 13.
  (s,) = window_scales((10, 13), [6], 4, 1)
  assert s.resized == (6, 8) and s.grid == (3, 5) and s.sampling_ratio == 2
  np.testing.assert_allclose(s.boxes()[:5, 0], [0, 1.5, 3, 4.5, 6])
  np.testing.assert_allclose(s.boxes()[::5, 1], [0, 1.5, 3])
  np.testing.assert_allclose(s.boxes()[-1], [6, 3, 12, 9])
  # A window as tall as the image: one row.
  (s,) = window_scales((10, 13), [10], 4, 1)
  np.testing.assert_allclose(s.boxes(), [[0, 0, 10, 10], [2.5, 0, 12.5, 10]])
  # Several scales concatenate in order; every window lies inside the image.
  scales = window_scales((10, 13), [4, 6, 8, 10], 4, 1)
  boxes = window_boxes(scales)
  assert len(boxes) == 7 * 10 + 15 + 6 + 2
  assert boxes.min() >= 0 and boxes[:, 2].max() <= 13 and boxes[:, 3].max() <= 10


def test_windows_at_the_input_size_are_plain_slices():
  image = jax.random.normal(jax.random.key(3), (12, 9, 2))
  (s,) = window_scales((12, 9), [4], 4, 2)  # factor 1: no resampling
  got = jax.jit(crop_and_resize, static_argnums=(2, 3))(image[None], s.boxes()[None], 4,
                                                         s.sampling_ratio)[0]
  want = [image[y:y + 4, x:x + 4] for y in range(0, 9, 2) for x in range(0, 6, 2)]
  np.testing.assert_allclose(got, np.stack(want), atol=1e-6)


# ------------------------------------------------------- crop loop == fully convolutional


def test_network_stride(detector):
  assert detector.net_stride == 4


@pytest.mark.parametrize("stride, sides", [(1, [21]), (4, [18, 23.5, 27]), (8, [18, 27])])
def test_crop_loop_and_fully_convolutional_give_the_same_scores(detector, stride, sides):
  image = jax.random.normal(jax.random.key(1), (27, 34, 3))
  scales = detector.scales(image.shape[:2], sides, stride)
  k = len(window_boxes(scales))
  a = jax.jit(lambda im: crop_logits(detector.classify, im, scales))(image)
  b = jax.jit(lambda im: fcn_logits(detector.score_map, im, scales, detector.net_stride))(image)
  assert a.shape == b.shape == (k, 4)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  assert float(jnp.std(a)) > 0.05  # scores that vary between windows


def test_crop_loop_in_chunks_is_the_same(detector):
  image = jax.random.normal(jax.random.key(2), (22, 22, 3))
  scales = detector.scales(image.shape[:2], [18, 22], 2)
  a, b = jax.jit(lambda im: (crop_logits(detector.classify, im, scales, chunk_size=3),
                             crop_logits(detector.classify, im, scales)))(image)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_padded_network_is_not_exact():
  # Why window_cnn: a zero-padded ResNet sees padding in a crop and neighbours in the image.
  model = create_model("resnet", num_classes=3, stage_sizes=(1,), widths=(4,), stem="cifar",
                       stem_width=4, scan=False)
  det = SlidingWindowDetector(model, _random_variables(model, 8), 8)
  assert det.net_stride == 1
  image = jax.random.normal(jax.random.key(1), (10, 10, 3))
  scales = det.scales(image.shape[:2], [8], 2)
  a, b = jax.jit(lambda im: (crop_logits(det.classify, im, scales),
                             fcn_logits(det.score_map, im, scales, det.net_stride)))(image)
  assert float(jnp.max(jnp.abs(a - b))) > 1e-3


# ------------------------------------------------------------------------------ detections


def test_detections_per_class_nms():
  boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [30, 30, 40, 40]], np.float32)
  probs = np.array([[0.1, 0.9, 0.0, 0.0],     # class 0, 0.9
                    [0.2, 0.7, 0.1, 0.0],     # class 0, 0.7: IoU 9/11 with the first: suppressed
                    [0.4, 0.0, 0.6, 0.0],     # class 1 on the same box: kept
                    [0.98, 0.0, 0.0, 0.02]])  # class 2 at 0.02 <= score_threshold: dropped
  out_boxes, scores, classes, valid = detections(np.log(probs + 1e-12), boxes,
                                                 iou_threshold=0.5, score_threshold=0.05,
                                                 max_detections=4)
  np.testing.assert_array_equal(valid, [True, True, False, False])
  np.testing.assert_allclose(scores, [0.9, 0.6, 0, 0], rtol=1e-5)
  np.testing.assert_array_equal(classes[:2], [0, 1])  # one box, two classes: both kept
  np.testing.assert_array_equal(out_boxes[:2], boxes[[0, 2]])


def test_detect_both_ways_agree(detector):
  image = jax.random.normal(jax.random.key(4), (22, 22, 3))
  a = detector.detect(image, [18], 2, way="crop", score_threshold=0.0)
  b = detector.detect(image, [18], 2, way="fcn", score_threshold=0.0)
  np.testing.assert_allclose(a[1], b[1], atol=1e-5)
  np.testing.assert_array_equal(a[0], b[0])


# ------------------------------------------------------------------------------ crops


def test_window_labels_on_hand_made_boxes():
  gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
  gt_classes = np.array([2, 0, 1])
  valid = np.array([True, True, False])
  windows = np.array([[0, 0, 10, 10],    # IoU 1 with class 2 -> 3
                      [0, 0, 10, 5],     # IoU 0.5 (>= object_iou) -> 3
                      [5, 0, 15, 10],    # IoU 1/3: between the thresholds -> ignored
                      [24, 20, 34, 30],  # IoU 60/140 = 0.43 -> ignored
                      [25, 20, 35, 30],  # IoU 50/150 = 1/3 -> ignored
                      [27, 20, 37, 30],  # IoU 30/170 = 0.18 -> background
                      [20, 20, 30, 30],  # class 0 -> 1
                      [40, 40, 50, 50]], np.float32)  # no overlap -> background
  labels = crops.label_windows(windows, gt, gt_classes, valid)
  np.testing.assert_array_equal(labels, [3, 3, -1, -1, -1, 0, 1, 0])
  # The invalid (padding) row never labels; without the first box its windows are background.
  labels = crops.label_windows(windows[:2], gt, gt_classes, [False, True, False])
  np.testing.assert_array_equal(labels, [0, 0])
  # Batched: [B, M, 4] against [B, N, 4].
  batched = crops.label_windows(np.stack([windows, windows]), np.stack([gt, gt]),
                                np.stack([gt_classes, gt_classes]), np.stack([valid, valid]))
  np.testing.assert_array_equal(batched[1], [3, 3, -1, -1, -1, 0, 1, 0])


def _numpy_iou(a, b):
  """IoU of a [M, 4] with each row's boxes b [M, N, 4] (x1, y1, x2, y2): a numpy reference."""
  lo = np.maximum(a[:, None, :2], b[..., :2])
  hi = np.minimum(a[:, None, 2:], b[..., 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), -1)
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  with np.errstate(invalid="ignore"):
    return inter / (area(a)[:, None] + area(b) - inter)


def test_sampled_windows_obey_their_labels():
  gt = np.array([[[4, 4, 20, 20], [30, 30, 44, 50], [0, 0, 0, 0]],
                 [[10, 30, 30, 48], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
  classes = np.array([[0, 2, 0], [1, 0, 0]])
  valid = np.array([[True, True, False], [True, False, False]])
  index, boxes, labels = crops.sample_windows(gt, classes, valid, (56, 64),
                                              np.random.default_rng(0), window_range=(10, 30),
                                              per_object=3, background=5)
  sides = boxes[:, 2:] - boxes[:, :2]
  np.testing.assert_allclose(sides[:, 0], sides[:, 1], rtol=1e-6)  # squares
  assert boxes.min() >= 0 and boxes[:, 2].max() <= 64 and boxes[:, 3].max() <= 56
  np.testing.assert_array_equal(np.bincount(index[labels == 0]), [5, 5])
  np.testing.assert_array_equal(np.bincount(labels), [10, 3, 3, 3])
  iou = _numpy_iou(boxes, gt[index])  # [M, N]
  for i, row, label in zip(index, iou, labels):
    row = row[valid[i]]
    if label == 0:
      assert row.max() < 0.3
    else:
      assert row.max() >= 0.5 and classes[i][valid[i]][row.argmax()] == label - 1


def test_extract_crops_are_the_windows():
  images = np.asarray(jax.random.normal(jax.random.key(5), (2, 16, 16, 3)))
  boxes = np.array([[2, 3, 8, 9], [0, 0, 6, 6], [10, 10, 16, 16]], np.float32)
  out = crops.extract_crops(images, np.array([1, 0, 1]), boxes, 6, chunk=2)
  np.testing.assert_allclose(out, np.stack([images[1, 3:9, 2:8], images[0, :6, :6],
                                            images[1, 10:, 10:]]), atol=1e-6)


# ------------------------------------------------------------------------------ bad input


def test_bad_input(detector):
  with pytest.raises(ValueError, match=r"window_sizes: a window of side 40 is larger than the "
                                       r"30x50 image; expected sides <= 30"):
    window_scales((30, 50), [20, 40], N, 4)
  with pytest.raises(ValueError, match="window_sizes: expected a non-empty list"):
    window_scales((30, 50), [], N, 4)
  with pytest.raises(ValueError, match="window_sizes: expected .* got \\[10, -1\\]"):
    window_scales((30, 50), [10, -1], N, 4)
  with pytest.raises(ValueError, match="stride: expected a positive int, got 0"):
    window_scales((30, 50), [10], N, 0)
  with pytest.raises(ValueError, match="image_size: expected"):
    window_scales((30,), [10], N, 4)
  image = jnp.zeros((30, 30, 3))
  with pytest.raises(ValueError, match="stride: expected a divisor or a multiple of the "
                                       "network's stride 4, got 3"):
    fcn_logits(detector.score_map, image, detector.scales((30, 30), [20], 3), 4)
  with pytest.raises(ValueError, match="way: expected 'crop' or 'fcn', got 'loop'"):
    detector.detect(image, [20], way="loop")
  with pytest.raises(ValueError, match=r"image: expected one float image \[H, W, C\]"):
    detector.detect(jnp.zeros((1, 30, 30, 3)), [20])
  with pytest.raises(ValueError, match="logits, boxes: expected"):
    detections(np.zeros((3, 4)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="background_iou, object_iou"):
    crops.label_windows(np.zeros((1, 4)), np.zeros((1, 4)), [0], object_iou=0.3,
                        background_iou=0.5)
  with pytest.raises(ValueError, match=r"window_range: expected .* <= 56"):
    crops.sample_windows(np.zeros((1, 1, 4)), np.zeros((1, 1)), np.ones((1, 1), bool), (56, 64),
                         np.random.default_rng(0), window_range=(10, 60))
  model = create_model("window_cnn", num_classes=2, widths=(4, 4, 4))
  with pytest.raises(ValueError, match="x: images of shape \\(8, 8\\) are too small"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))


@pytest.mark.slow
def test_the_crop_classifier_learns_and_detects():
  from jaxvision.analysis.sliding_window_shapes import train_crop_classifier
  # Background: noise; class c: a bright square in channel c.
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 512).astype(np.int32)
  x = rng.normal(0, 0.3, (512, N, N, 3)).astype(np.float32)
  for c in range(3):
    x[labels == c + 1, 4:14, 4:14, c] += 2.0
  model = create_model("window_cnn", num_classes=4, widths=(8, 8, 8))
  variables, log = train_crop_classifier(model, x, labels, steps=150, batch_size=64,
                                         log_every=50)
  assert [s for s, _, _ in log] == [50, 100, 150] and log[-1][1] < log[0][1]
  assert np.mean(np.argmax(model.apply(variables, x, train=False), -1) == labels) > 0.9
  # A square of class 1 at (20, 30) in a 48x64 image: the best detection is there.
  image = rng.normal(0, 0.3, (48, 64, 3)).astype(np.float32)
  image[20:30, 30:40, 1] += 2.0
  det = SlidingWindowDetector(model, variables, N)
  boxes, scores, classes, valid = det.detect(image, [18], 1)
  assert bool(valid[0]) and int(classes[0]) == 1
  np.testing.assert_allclose(boxes[0], [26, 16, 44, 34], atol=4)
