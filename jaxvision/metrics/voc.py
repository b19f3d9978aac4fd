"""PASCAL VOC detection AP, as the official devkit (VOCevaldet.m / VOCap.m) computes it.

Per class, detections of all images are ranked by decreasing score (a stable sort, as
MATLAB's). Each one is matched to the ground truth box of its image and class it overlaps
most; it is a true positive when that IoU is >= `iou_threshold` (the devkit's test: `ovmax >=
minoverlap`; py-faster-rcnn's port uses `>`) and the box was not matched before, a false
positive otherwise. A detection whose best box is "difficult" is neither (it is ignored), and
difficult boxes do not count as positives. IoU uses the devkit's pixel convention: boxes are
inclusive pixel indices, so widths are `x2 - x1 + 1` (`plus_one=True`; VOC's 1-based pixel
boxes are TFDS's normalised boxes times the image size).

AP: VOC2007's 11-point interpolated precision at recall 0, 0.1, ..., 1 (the exact thresholds
k / 10), and VOC2010+'s area under the monotone precision envelope (all points). A class with
no positives has AP nan and is left out of the mean.

numpy, on the host: these run once per evaluation.
"""

from __future__ import annotations

import numpy as np


def voc_ap(recall, precision, use_07_metric: bool) -> float:
  """AP of a precision/recall curve (detections ranked by decreasing score)."""
  recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
  if use_07_metric:
    points = [precision[recall >= t].max() if np.any(recall >= t) else 0.0
              for t in np.arange(11) / 10]
    return float(np.sum(points) / 11)
  mrec = np.concatenate([[0.0], recall, [1.0]])
  mpre = np.concatenate([[0.0], precision, [0.0]])
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
  return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def _overlaps(box, gt_boxes, plus_one: bool):
  """The devkit's IoU of one box with each of `gt_boxes`; -inf where they do not intersect."""
  one = 1.0 if plus_one else 0.0
  iw = np.minimum(box[2], gt_boxes[:, 2]) - np.maximum(box[0], gt_boxes[:, 0]) + one
  ih = np.minimum(box[3], gt_boxes[:, 3]) - np.maximum(box[1], gt_boxes[:, 1]) + one
  inter = iw * ih
  union = ((box[2] - box[0] + one) * (box[3] - box[1] + one)
           + (gt_boxes[:, 2] - gt_boxes[:, 0] + one) * (gt_boxes[:, 3] - gt_boxes[:, 1] + one)
           - inter)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where((iw > 0) & (ih > 0), inter / union, -np.inf)


def match_class(detections, ground_truth, iou_threshold: float = 0.5, plus_one: bool = True):
  """True/false positives of one class's detections, ranked by decreasing score.

  Args:
    detections: list over images of (boxes [D, 4] as (x1, y1, x2, y2) pixels, scores [D]).
    ground_truth: list over the same images of (boxes [G, 4], difficult bool [G]).

  Returns:
    (tp [sum D], fp [sum D], num_positives): tp and fp in rank order.
  """
  if len(detections) != len(ground_truth):
    raise ValueError(f"detections: expected one entry per image ({len(ground_truth)}), got "
                     f"{len(detections)}")
  image = np.concatenate([np.full(len(s), i) for i, (_, s) in enumerate(detections)] or [[]])
  scores = np.concatenate([np.asarray(s, np.float64) for _, s in detections] or [[]])
  boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b, _ in detections]
                         or [np.zeros((0, 4))])
  gt = [(np.asarray(b, np.float64).reshape(-1, 4), np.asarray(d, bool)) for b, d in ground_truth]
  matched = [np.zeros(len(d), bool) for _, d in gt]
  order = np.argsort(-scores, kind="stable")
  tp, fp = np.zeros(len(order)), np.zeros(len(order))
  for rank, k in enumerate(order):
    gt_boxes, difficult = gt[int(image[k])]
    ovmax, jmax = -np.inf, -1
    if len(gt_boxes):
      ov = _overlaps(boxes[k], gt_boxes, plus_one)
      jmax = int(np.argmax(ov))
      ovmax = ov[jmax]
    if ovmax >= iou_threshold:
      if not difficult[jmax]:
        if matched[int(image[k])][jmax]:
          fp[rank] = 1  # a second detection of the same object
        else:
          tp[rank] = 1
          matched[int(image[k])][jmax] = True
    else:
      fp[rank] = 1
  num_positives = int(sum(np.sum(~d) for _, d in gt))
  return tp, fp, num_positives


def precision_recall(tp, fp, num_positives: int):
  """Cumulative (recall, precision) along the ranking; None without positives."""
  if num_positives == 0:
    return None
  tp, fp = np.cumsum(tp), np.cumsum(fp)
  return tp / num_positives, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)


def class_ap(detections, ground_truth, *, use_07_metric: bool, iou_threshold: float = 0.5,
             plus_one: bool = True) -> float:
  """VOC AP of one class (see `match_class` for the arguments); nan without positives."""
  curve = precision_recall(*match_class(detections, ground_truth, iou_threshold, plus_one))
  return float("nan") if curve is None else voc_ap(*curve, use_07_metric)


class VOCEvaluator:
  """Accumulates per-image detections and ground truth; `result()` gives AP per class and mAP
  for both definitions.

  Boxes are (x1, y1, x2, y2) pixels; `jaxvision.ops.yxyx_to_xyxy` converts normalised boxes.
  """

  def __init__(self, num_classes: int, iou_threshold: float = 0.5, plus_one: bool = True):
    if num_classes < 1:
      raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
    self.num_classes, self.iou_threshold, self.plus_one = num_classes, iou_threshold, plus_one
    self._images = []

  def add(self, det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_difficult=None):
    """Adds one image: detections [D, 4], [D], [D] and ground truth [G, 4], [G], [G]."""
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    det_classes, gt_classes = np.asarray(det_classes, int), np.asarray(gt_classes, int)
    det_scores = np.asarray(det_scores, np.float64)
    gt_difficult = (np.zeros(len(gt_boxes), bool) if gt_difficult is None
                    else np.asarray(gt_difficult, bool))
    for name, value, n in (("det_scores", det_scores, len(det_boxes)),
                           ("det_classes", det_classes, len(det_boxes)),
                           ("gt_classes", gt_classes, len(gt_boxes)),
                           ("gt_difficult", gt_difficult, len(gt_boxes))):
      if value.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) to match the boxes, got {value.shape}")
    for name, value in (("det_classes", det_classes), ("gt_classes", gt_classes)):
      if value.size and (value.min() < 0 or value.max() >= self.num_classes):
        raise ValueError(f"{name}: expected class ids in [0, {self.num_classes}), got values in "
                         f"[{value.min()}, {value.max()}]")
    self._images.append((det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_difficult))

  def per_class(self, c: int):
    """(detections, ground_truth) of class `c` over the images added, for `class_ap`."""
    dets = [(b[k == c], s[k == c]) for b, s, k, _, _, _ in self._images]
    gts = [(b[k == c], d[k == c]) for _, _, _, b, k, d in self._images]
    return dets, gts

  def result(self) -> dict:
    """{"ap_voc07": [C], "map_voc07", "ap_voc12": [C], "map_voc12"} (nan-free means)."""
    curves = [precision_recall(*match_class(*self.per_class(c), self.iou_threshold,
                                            self.plus_one)) for c in range(self.num_classes)]
    out = {}
    for key, use_07 in (("voc07", True), ("voc12", False)):
      aps = np.array([np.nan if curve is None else voc_ap(*curve, use_07) for curve in curves])
      out[f"ap_{key}"] = aps
      out[f"map_{key}"] = float(np.nanmean(aps)) if np.any(~np.isnan(aps)) else float("nan")
    return out
