"""NMS against a NumPy transcription of torchvision's CPU kernel, including ties and the
strict `IoU > threshold` rule, under jit and vmap."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.ops import batched_nms, nms


def reference_nms(boxes, scores, iou_threshold):
  """torchvision/csrc/ops/cpu/nms_kernel.cpp in NumPy: float32 arithmetic, the IoU compared
  with a double threshold, scores sorted descending with ties in index order (stable)."""
  boxes = np.asarray(boxes, np.float32)
  x1, y1, x2, y2 = boxes.T
  areas = (x2 - x1) * (y2 - y1)
  order = np.argsort(-np.asarray(scores), kind="stable")
  suppressed = np.zeros(len(boxes), bool)
  keep = []
  for a, i in enumerate(order):
    if suppressed[i]:
      continue
    keep.append(int(i))
    for j in order[a + 1:]:
      if suppressed[j]:
        continue
      w = max(np.float32(0), min(x2[i], x2[j]) - max(x1[i], x1[j]))
      h = max(np.float32(0), min(y2[i], y2[j]) - max(y1[i], y1[j]))
      inter = w * h
      ovr = inter / (areas[i] + areas[j] - inter)
      if float(ovr) > iou_threshold:  # C++ promotes the float IoU to double
        suppressed[j] = True
  return keep


def reference_batched_nms(boxes, scores, classes, iou_threshold):
  boxes = np.asarray(boxes, np.float32)
  offsets = np.asarray(classes, np.float32) * (boxes.max() + np.float32(1))
  return reference_nms(boxes + offsets[:, None], scores, iou_threshold)


def random_boxes(rs, n, size=20.0):
  lo = rs.uniform(0, size, (n, 2))
  wh = rs.uniform(1, size / 2, (n, 2))
  return np.concatenate([lo, lo + wh], 1).astype(np.float32)


def kept(indices, valid):
  return [int(i) for i in np.asarray(indices)[np.asarray(valid)]]


@functools.lru_cache(maxsize=None)
def jitted(max_output_size):
  return jax.jit(nms, static_argnames="max_output_size")


def test_hand_made_case():
  boxes = jnp.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
  scores = jnp.array([0.8, 0.9, 0.5, 0.7])
  # 1 (0.9) keeps; 0 overlaps it by 81/119 = 0.68 -> out; 3 overlaps 1 by 72/118 = 0.61 -> out.
  assert kept(*nms(boxes, scores, 0.5, 4)) == [1, 2]
  assert kept(*nms(boxes, scores, 0.65, 4)) == [1, 3, 2]  # 0.61 <= 0.65; 0 is already out
  indices, valid = nms(boxes, scores, 0.5, 3)
  assert indices.shape == (3,) and np.asarray(valid).tolist() == [True, True, False]


def test_iou_equal_to_the_threshold_does_not_suppress():
  # IoU exactly 1/2 (representable): kept. IoU float32(1/3) > 1/3 as a double: suppressed.
  half = jnp.array([[0, 0, 4, 1], [0, 0, 2, 1.0]])
  assert kept(*nms(half, jnp.array([1.0, 0.5]), 0.5, 2)) == [0, 1]
  assert kept(*nms(half, jnp.array([1.0, 0.5]), 0.4999, 2)) == [0]
  third = np.array([[0, 0, 2, 1], [1, 0, 3, 1.0]], np.float32)
  assert reference_nms(third, [1.0, 0.5], 1 / 3) == [0]
  assert kept(*nms(third, jnp.array([1.0, 0.5]), 1 / 3, 2)) == [0]


def test_ties_keep_index_order():
  boxes = jnp.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60.0]])
  scores = jnp.array([0.5, 0.7, 0.7, 0.7])
  assert kept(*nms(boxes, scores, 0.5, 4)) == [1, 3]


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_reference_on_random_boxes_with_ties(seed):
  rs = np.random.RandomState(seed)
  n = 60
  boxes = random_boxes(rs, n)
  scores = rs.randint(0, 6, n).astype(np.float32) / 5  # many ties
  threshold = [0.0, 0.2, 0.5, 0.7, 1 / 3, 0.9][seed]
  expected = reference_nms(boxes, scores, threshold)
  indices, valid = jitted(n)(boxes, scores, threshold, max_output_size=n)
  assert kept(indices, valid) == expected
  # A smaller output keeps the first ones.
  indices, valid = jitted(5)(boxes, scores, threshold, max_output_size=5)
  assert kept(indices, valid) == expected[:5]


def test_score_threshold_drops_low_scores_before_suppression():
  boxes = jnp.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.0]])
  scores = jnp.array([0.2, 0.9, 0.5])
  assert kept(*nms(boxes, scores, 0.5, 3, score_threshold=0.6)) == [1]
  # A box below the score threshold does not suppress the boxes it overlaps.
  assert kept(*nms(boxes, jnp.array([0.9, 0.2, 0.1]), 0.5, 3, score_threshold=0.15)) == [0]
  assert kept(*nms(boxes, jnp.array([0.1, 0.2, 0.1]), 0.5, 3, score_threshold=0.15)) == [1]


def test_vmap_over_a_batch_matches_per_image_calls():
  rs = np.random.RandomState(7)
  boxes = np.stack([random_boxes(rs, 30) for _ in range(4)])
  scores = rs.rand(4, 30).astype(np.float32)
  run = jax.jit(jax.vmap(lambda b, s: nms(b, s, 0.4, 30)))
  indices, valid = run(boxes, scores)
  for i in range(4):
    assert kept(indices[i], valid[i]) == reference_nms(boxes[i], scores[i], 0.4)


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_agrees_with_the_coordinate_trick_reference(seed):
  rs = np.random.RandomState(100 + seed)
  boxes = random_boxes(rs, 50)
  scores = rs.randint(0, 4, 50).astype(np.float32)
  classes = rs.randint(0, 3, 50)
  indices, valid = jax.jit(batched_nms, static_argnames="max_output_size")(
      boxes, scores, classes, 0.5, max_output_size=50)
  expected = reference_batched_nms(boxes, scores, classes, 0.5)
  assert kept(indices, valid) == expected
  # Classes never suppress each other: the result is the union of per-class NMS.
  per_class = sorted(int(np.flatnonzero(classes == c)[k]) for c in range(3)
                     for k in reference_nms(boxes[classes == c], scores[classes == c], 0.5))
  assert sorted(expected) == per_class


def test_empty_input_and_bad_arguments():
  indices, valid = nms(jnp.zeros((0, 4)), jnp.zeros((0,)), 0.5, 3)
  assert indices.shape == (3,) and not np.asarray(valid).any()
  with pytest.raises(ValueError, match=r"scores: expected shape \(2,\) to match boxes, got \(3,\)"):
    nms(jnp.zeros((2, 4)), jnp.zeros(3), 0.5, 2)
  with pytest.raises(ValueError, match=r"boxes: expected shape \[N, 4\], got \(2, 5\)"):
    nms(jnp.zeros((2, 5)), jnp.zeros(2), 0.5, 2)
  with pytest.raises(ValueError, match="max_output_size: expected a static int >= 0, got -1"):
    nms(jnp.zeros((2, 4)), jnp.zeros(2), 0.5, -1)
  with pytest.raises(ValueError, match=r"classes: expected shape \(2,\) to match scores"):
    batched_nms(jnp.zeros((2, 4)), jnp.zeros(2), jnp.zeros(3, jnp.int32), 0.5, 2)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.float16])
def test_narrow_boxes_are_upcast_and_suppress_as_in_float32(dtype):
  # Sides of 100-120 overflow int8 / uint8 areas, and float16 areas (14400 * 100 > 65504 after
  # the 10x scale below); at 0.5 the float32 result suppresses 1 (IoU 0.83) and keeps 2.
  scale = 10 if dtype in (np.int16, np.float16) else 1
  boxes = np.array([[0, 0, 120, 120], [0, 0, 120, 100], [0, 60, 120, 120]]) * scale
  if dtype == np.int8:
    boxes = boxes - 60  # into int8's range, same IoUs
  scores = np.array([0.9, 0.8, 0.7], np.float32)
  expected = reference_nms(boxes.astype(np.float32), scores, 0.5)
  assert expected == [0, 2]
  assert kept(*nms(boxes.astype(dtype), scores, 0.5, 3)) == expected
  classes = np.array([0, 1, 1])  # 1 and 2 (IoU 1/3) are both kept in class 1
  assert sorted(kept(*batched_nms(boxes.astype(dtype), scores, classes, 0.5, 3))) == [0, 1, 2]


def test_nan_boxes_neither_suppress_nor_are_suppressed_and_nan_scores_are_dropped():
  boxes = jnp.array([[0, 0, 10, 10], [0, 0, 10, 10], [np.nan, 0, 10, 10], [1, 1, 9, 9]],
                    jnp.float32)
  scores = jnp.array([0.9, 0.8, 0.95, np.nan])
  assert kept(*nms(boxes, scores, 0.5, 4)) == [2, 0]
