"""Box formats, areas, IoU and GIoU against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import ops


def test_yxyx_normalised_to_xyxy_pixels_and_back():
  yxyx = jnp.array([[0.1, 0.2, 0.5, 1.0]])
  xyxy = ops.yxyx_to_xyxy(yxyx, height=100, width=200)
  np.testing.assert_allclose(xyxy, [[40.0, 10.0, 200.0, 50.0]], rtol=1e-6)
  np.testing.assert_allclose(ops.xyxy_to_yxyx(xyxy, 100, 200), yxyx, rtol=1e-6)


def test_per_image_sizes_broadcast_over_boxes():
  yxyx = jnp.ones((2, 3, 4)) * 0.5
  sizes = jnp.array([10.0, 20.0])[:, None]
  out = ops.yxyx_to_xyxy(yxyx, sizes, 2 * sizes)
  np.testing.assert_allclose(out[1, 0], [20.0, 10.0, 20.0, 10.0])
  np.testing.assert_allclose(out[0, 2], [10.0, 5.0, 10.0, 5.0])


def test_centre_size_conversions_round_trip():
  xyxy = jnp.array([[2.0, 4.0, 6.0, 10.0]])
  np.testing.assert_allclose(ops.xyxy_to_cxcywh(xyxy), [[4.0, 7.0, 4.0, 6.0]])
  np.testing.assert_allclose(ops.cxcywh_to_xyxy(ops.xyxy_to_cxcywh(xyxy)), xyxy)
  yxyx = jnp.array([[4.0, 2.0, 10.0, 6.0]])
  np.testing.assert_allclose(ops.yxyx_to_cxcywh(yxyx), [[4.0, 7.0, 4.0, 6.0]])
  np.testing.assert_allclose(ops.cxcywh_to_yxyx(ops.yxyx_to_cxcywh(yxyx)), yxyx)


def test_area_iou_and_giou_by_hand():
  a = jnp.array([[0.0, 0.0, 2.0, 2.0]])
  b = jnp.array([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
  np.testing.assert_allclose(ops.area(b), [4.0, 1.0, 4.0])
  # inter 1, union 7; disjoint; identical.
  np.testing.assert_allclose(ops.box_iou(a, b), [[1 / 7, 0.0, 1.0]], rtol=1e-6)
  # hulls: 3x3 = 9 -> 1/7 - 2/9; 5x2 = 10, union 5 -> 0 - 5/10; identical -> 1.
  np.testing.assert_allclose(ops.generalized_box_iou(a, b), [[1 / 7 - 2 / 9, -0.5, 1.0]], rtol=1e-6)
  np.testing.assert_allclose(ops.iou(a, b), [1 / 7, 0.0, 1.0], rtol=1e-6)  # broadcast pairs


def test_iou_follows_torchvision_for_empty_boxes():
  # No epsilon: two empty boxes give 0 / 0 = nan; an empty box against a real one gives 0.
  empty = jnp.array([[1.0, 1.0, 1.0, 1.0]])
  assert np.isnan(float(ops.box_iou(empty, empty)[0, 0]))
  assert float(ops.box_iou(empty, jnp.array([[0.0, 0.0, 2.0, 2.0]]))[0, 0]) == 0.0


def test_pairwise_iou_is_batched_and_jittable():
  rs = np.random.RandomState(0)
  lo = rs.rand(3, 5, 2)
  a = np.concatenate([lo, lo + rs.rand(3, 5, 2)], -1).astype(np.float32)
  b = a[:, ::-1]
  batched = jax.jit(ops.box_iou)(a, b)
  assert batched.shape == (3, 5, 5)
  for i in range(3):
    np.testing.assert_allclose(batched[i], ops.box_iou(a[i], b[i]), rtol=1e-6)
  np.testing.assert_allclose(jnp.diagonal(ops.box_iou(a, a), axis1=1, axis2=2), 1.0, rtol=1e-6)


def test_clipping():
  np.testing.assert_allclose(ops.clip_yxyx(jnp.array([-0.1, 0.2, 1.3, 0.9])), [0.0, 0.2, 1.0, 0.9])
  np.testing.assert_allclose(ops.clip_xyxy(jnp.array([-5.0, 3.0, 25.0, 12.0]), height=10, width=20),
                             [0.0, 3.0, 20.0, 10.0])


def test_bad_box_shape_is_named():
  with pytest.raises(ValueError, match=r"boxes: expected boxes \[\.\.\., 4\], got shape \(2, 3\)"):
    ops.area(jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"b: expected boxes \[\.\.\., 4\], got shape \(5,\)"):
    ops.box_iou(jnp.zeros((1, 4)), jnp.zeros(5))


@pytest.mark.parametrize("dtype,box,expected_area", [
    (np.int8, [-50, -50, 50, 50], 10_000),        # side 100 overflows int8 (and so does 100 * 100)
    (np.uint8, [0, 0, 200, 250], 50_000),
    (np.int16, [-20_000, 0, 20_000, 1], 40_000),   # the side 40000 overflows int16
    (np.float16, [0, 0, 300, 300], 90_000),        # past float16's largest value, 65504
])
def test_narrow_boxes_are_upcast_before_areas_and_ious(dtype, box, expected_area):
  boxes = np.array([box], dtype)
  a = ops.area(boxes)
  assert int(a[0]) == expected_area
  assert a.dtype == (jnp.float32 if dtype == np.float16 else jnp.int32)
  half = np.array([[box[0], box[1], box[0] + (box[2] - box[0]) // 2, box[3]]], dtype)
  # `half` is half of `box`: IoU 1/2, GIoU 1/2 (the hull is `box`); the same as in float32.
  for f in (ops.box_iou, ops.generalized_box_iou):
    np.testing.assert_allclose(f(boxes, half), f(boxes.astype(np.float32), half.astype(np.float32)))
    np.testing.assert_allclose(f(boxes, half), [[0.5]], rtol=1e-6)
  assert ops.box_iou(boxes, half).dtype == jnp.float32


def test_nan_boxes_give_nan_areas_and_ious():
  boxes = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, np.nan, 2.0, 2.0]])
  assert np.isnan(np.asarray(ops.area(boxes))).tolist() == [False, True]
  iou = np.asarray(ops.box_iou(boxes, boxes))
  assert np.isnan(iou).tolist() == [[False, True], [True, True]]
  assert np.isnan(np.asarray(ops.generalized_box_iou(boxes, boxes)[1])).all()
