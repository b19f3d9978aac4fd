"""COCO detection metrics through pycocotools' COCOeval, from in-memory COCO json dicts.

`to_coco_json` exports our per-image detections and ground truth (pixel (x1, y1, x2, y2)
boxes, class ids 0..C-1) as a COCO ground-truth dataset and a result list; `CocoEvaluator`
accumulates images and runs COCOeval: IoU >= t for t in 0.50:0.05:0.95, 101 recall points,
at most 1/10/100 detections per image, areas split at 32^2 and 96^2, crowd boxes ignored.
These are COCO numbers; VOC's (jaxvision.metrics.voc) are computed differently.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

# The 12 numbers of COCOeval.summarize(), in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _xywh(boxes):
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def to_coco_json(images, num_classes: int):
  """COCO dicts from a list of per-image dicts.

  Each image: `height`, `width`, `det_boxes` [D, 4], `det_scores` [D], `det_classes` [D],
  `gt_boxes` [G, 4], `gt_classes` [G] and optionally `gt_crowd` [G] (ignored regions) and
  `gt_area` [G] (default: box area). Image ids are 1.., category ids class + 1.

  Returns:
    (ground-truth dataset dict, list of detection dicts).
  """
  dataset = {"images": [], "annotations": [],
             "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
  results = []
  for image_id, im in enumerate(images, start=1):
    dataset["images"].append({"id": image_id, "height": int(im["height"]),
                              "width": int(im["width"])})
    gt = _xywh(im["gt_boxes"])
    crowd = np.asarray(im.get("gt_crowd", np.zeros(len(gt), bool)), bool)
    areas = np.asarray(im.get("gt_area", gt[:, 2] * gt[:, 3]), np.float64)
    for box, c, is_crowd, a in zip(gt, np.asarray(im["gt_classes"]), crowd, areas):
      dataset["annotations"].append({
          "id": len(dataset["annotations"]) + 1, "image_id": image_id, "category_id": int(c) + 1,
          "bbox": box.tolist(), "area": float(a), "iscrowd": int(is_crowd)})
    for box, c, s in zip(_xywh(im["det_boxes"]), np.asarray(im["det_classes"]),
                         np.asarray(im["det_scores"])):
      results.append({"image_id": image_id, "category_id": int(c) + 1, "bbox": box.tolist(),
                      "score": float(s)})
  return dataset, results


def coco_evaluate(dataset: dict, results: list) -> dict:
  """COCOeval (bbox) of `results` against `dataset`: {name: value for the 12 STAT_NAMES}.

  With no detections at all every number is 0 (pycocotools cannot load an empty result list).
  """
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  if not results:
    return dict.fromkeys(STAT_NAMES, 0.0)
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    dt = gt.loadRes(results)
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


class CocoEvaluator:
  """Accumulates images (pixel xyxy boxes); `result()` gives the 12 COCO numbers."""

  def __init__(self, num_classes: int):
    if num_classes < 1:
      raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
    self.num_classes = num_classes
    self._images = []

  def add(self, det_boxes, det_scores, det_classes, gt_boxes, gt_classes, *, height, width,
          gt_crowd=None, gt_area=None):
    im = {"height": height, "width": width, "det_boxes": det_boxes, "det_scores": det_scores,
          "det_classes": det_classes, "gt_boxes": gt_boxes, "gt_classes": gt_classes}
    if gt_crowd is not None:
      im["gt_crowd"] = gt_crowd
    if gt_area is not None:
      im["gt_area"] = gt_area
    self._images.append(im)

  def result(self) -> dict:
    return coco_evaluate(*to_coco_json(self._images, self.num_classes))
