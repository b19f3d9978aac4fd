"""VOC AP (both definitions) and COCO metrics on hand-made detections with hand-computed values."""

import numpy as np
import pytest

from jaxvision.metrics.coco import STAT_NAMES, CocoEvaluator
from jaxvision.metrics.voc import VOCEvaluator, class_ap, voc_ap

# A known PR curve: 4 positives; ranked detections TP, FP, TP, TP, FP, FP.
RECALL = np.array([0.25, 0.25, 0.5, 0.75, 0.75, 0.75])
PRECISION = np.array([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5, 3 / 6])


def test_voc_ap_of_a_known_curve_by_hand():
  # All points: envelope 1 on (0, .25], .75 on (.25, .75], 0 beyond -> .25 + .5 * .75.
  assert voc_ap(RECALL, PRECISION, use_07_metric=False) == pytest.approx(0.625)
  # 11 points: t = 0, .1, .2 -> 1; t = .3 ... .7 -> .75; t = .8, .9, 1 -> 0.
  assert voc_ap(RECALL, PRECISION, use_07_metric=True) == pytest.approx((3 + 5 * 0.75) / 11)


def box(x, y, w=10, h=10):
  return [x, y, x + w - 1, y + h - 1]  # inclusive pixel indices, as VOC


def test_the_same_curve_from_boxes():
  # Four images with one object each; the detections rank TP, FP, TP, TP, FP, FP; image 3's
  # object is never found.
  gts = [([box(0, 0)], [False]) for _ in range(4)]
  dets = [([box(0, 0), box(50, 50)], [0.9, 0.8]),   # TP, FP
          ([box(0, 0)], [0.7]),                      # TP
          ([box(0, 0), box(30, 0)], [0.6, 0.5]),     # TP, FP
          ([box(0, 40)], [0.4])]                     # FP
  assert class_ap(dets, gts, use_07_metric=False) == pytest.approx(0.625)
  assert class_ap(dets, gts, use_07_metric=True) == pytest.approx((3 + 5 * 0.75) / 11)


def test_perfect_detections_give_ap_one():
  ev = VOCEvaluator(num_classes=2)
  ev.add([box(0, 0), box(20, 20)], [0.9, 0.3], [0, 1], [box(0, 0), box(20, 20)], [0, 1])
  ev.add([box(5, 5)], [0.5], [1], [box(5, 5)], [1])
  r = ev.result()
  np.testing.assert_allclose(r["ap_voc07"], [1.0, 1.0])
  assert r["map_voc07"] == 1.0 and r["map_voc12"] == 1.0


def test_a_duplicate_detection_is_a_false_positive():
  gts = [([box(0, 0), box(40, 40)], [False, False])]
  # Ranked: TP (first object), FP (same object again), TP (second object).
  dets = [([box(0, 0), box(1, 0), box(40, 40)], [0.9, 0.8, 0.7])]
  # Recall .5, .5, 1; precision 1, .5, 2/3. All points: .5 * 1 + .5 * 2/3.
  assert class_ap(dets, gts, use_07_metric=False) == pytest.approx(0.5 + 1 / 3)
  assert class_ap(dets, gts, use_07_metric=True) == pytest.approx((6 + 5 * 2 / 3) / 11)
  # Without the duplicate both objects are found at precision 1.
  single = [([box(0, 0), box(40, 40)], [0.9, 0.7])]
  assert class_ap(single, gts, use_07_metric=False) == 1.0


def test_difficult_objects_are_neither_positives_nor_false_positives():
  gts = [([box(0, 0), box(40, 40), box(80, 80)], [True, False, True])]
  # Hitting a difficult object (even twice) is ignored; missing one costs nothing.
  dets = [([box(0, 0), box(0, 0), box(40, 40)], [0.9, 0.8, 0.7])]
  assert class_ap(dets, gts, use_07_metric=False) == 1.0
  assert class_ap(dets, gts, use_07_metric=True) == 1.0
  not_difficult = [([box(0, 0), box(40, 40), box(80, 80)], [False, False, False])]
  assert class_ap(dets, not_difficult, use_07_metric=False) < 1.0


def test_iou_threshold_with_the_devkit_pixel_convention():
  gts = [([[0, 0, 9, 9]], [False])]  # 10 x 10 pixels
  # Columns 0..4 of the object: 50 / 100 = 0.5 >= 0.5 -> TP (the devkit's `>=`).
  assert class_ap([([[0, 0, 4, 9]], [1.0])], gts, use_07_metric=False) == 1.0
  assert class_ap([([[0, 0, 3, 9]], [1.0])], gts, use_07_metric=False) == 0.0  # 0.4
  # Without the +1: 36 / 81 < 0.5.
  assert class_ap([([[0, 0, 4, 9]], [1.0])], gts, use_07_metric=False, plus_one=False) == 0.0


def test_detections_of_the_wrong_class_and_classes_without_objects():
  ev = VOCEvaluator(num_classes=3)
  ev.add([box(0, 0), box(0, 0)], [0.9, 0.8], [1, 0], [box(0, 0)], [0])
  r = ev.result()
  # Class 0: TP at rank 1 -> AP 1; class 1: no positives -> nan, excluded; class 2 likewise.
  assert r["ap_voc12"][0] == 1.0 and np.isnan(r["ap_voc12"][1:]).all()
  assert r["map_voc12"] == 1.0


def test_empty_images_and_bad_input():
  ev = VOCEvaluator(num_classes=1)
  ev.add(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [])
  ev.add([box(0, 0)], [0.5], [0], [box(0, 0)], [0])
  assert ev.result()["map_voc07"] == 1.0
  with pytest.raises(ValueError, match=r"det_classes: expected class ids in \[0, 1\), got values"):
    ev.add([box(0, 0)], [0.5], [3], [box(0, 0)], [0])
  with pytest.raises(ValueError, match=r"gt_difficult: expected shape \(1,\)"):
    ev.add([box(0, 0)], [0.5], [0], [box(0, 0)], [0], [True, False])


def coco_result(dets, gts, height=200, width=200):
  ev = CocoEvaluator(num_classes=2)
  for (db, ds, dc), (gb, gc) in zip(dets, gts):
    ev.add(db, ds, dc, gb, gc, height=height, width=width)
  return ev.result()


def test_coco_perfect_detections():
  r = coco_result([([[0, 0, 100, 100], [10, 10, 30, 30]], [0.9, 0.8], [0, 1])],
                  [([[0, 0, 100, 100], [10, 10, 30, 30]], [0, 1])])
  assert list(r) == list(STAT_NAMES)
  for k in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
    assert r[k] == pytest.approx(1.0)


def test_coco_known_partial_overlap():
  # IoU 0.72 with the only (large: 100^2 > 96^2) object: a hit at thresholds .50 ... .70
  # (5 of 10), a miss at .75 ... .95; there are no small or medium objects (-1).
  r = coco_result([([[0, 0, 72, 100]], [0.9], [0])], [([[0, 0, 100, 100]], [0])])
  assert r["AP"] == pytest.approx(0.5) and r["AP50"] == pytest.approx(1.0)
  assert r["AP75"] == 0.0 and r["APl"] == pytest.approx(0.5)
  assert r["APs"] == -1.0 and r["APm"] == -1.0
  assert r["AR100"] == pytest.approx(0.5)


def test_coco_crowd_regions_are_ignored_and_no_detections_give_zeros():
  ev = CocoEvaluator(num_classes=1)
  ev.add([[0, 0, 50, 50], [100, 100, 150, 150]], [0.9, 0.8], [0, 0],
         [[0, 0, 50, 50], [100, 100, 150, 150]], [0, 0], height=200, width=200,
         gt_crowd=[False, True])
  assert ev.result()["AP"] == pytest.approx(1.0)  # the crowd hit is not a false positive
  empty = CocoEvaluator(num_classes=1)
  empty.add(np.zeros((0, 4)), [], [], [[0, 0, 10, 10]], [0], height=20, width=20)
  assert set(empty.result().values()) == {0.0}
