"""COCO detection metrics through pycocotools' COCOeval, from in-memory COCO json dicts.

`to_coco_json` exports our per-image detections and ground truth (pixel (x1, y1, x2, y2)
boxes, class ids 0..C-1) as a COCO ground-truth dataset and a result list; `CocoEvaluator`
accumulates images and runs COCOeval: IoU >= t for t in 0.50:0.05:0.95, 101 recall points,
at most 1/10/100 detections per image, areas split at 32^2 and 96^2, crowd boxes ignored.
These are COCO numbers; VOC's (jaxvision.metrics.voc) are computed differently.

With instance masks (binary [N, H, W] image masks for the ground truth and the detections),
`coco_evaluate(..., iou_type="segm")` gives the same 12 numbers for the masks (IoU of masks,
areas of the true masks), as Mask R-CNN's mask AP.
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
  `gt_boxes` [G, 4], `gt_classes` [G] and optionally `gt_crowd` [G] (ignored regions),
  `gt_area` [G] (default: the mask's area, else the box's) and binary masks `gt_masks`
  [G, H, W] and `det_masks` [D, H, W] (stored as RLE `segmentation`s, for iou_type "segm").
  Image ids are 1.., category ids class + 1.

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
    gt_rles = _rles(im, "gt_masks", len(gt))
    default_area = (gt[:, 2] * gt[:, 3] if gt_rles is None else
                    np.asarray(im["gt_masks"]).reshape(len(gt), -1).sum(1))
    areas = np.asarray(im.get("gt_area", default_area), np.float64)
    for i, (box, c, is_crowd, a) in enumerate(zip(gt, np.asarray(im["gt_classes"]), crowd, areas)):
      ann = {"id": len(dataset["annotations"]) + 1, "image_id": image_id,
             "category_id": int(c) + 1, "bbox": box.tolist(), "area": float(a),
             "iscrowd": int(is_crowd)}
      if gt_rles is not None:
        ann["segmentation"] = gt_rles[i]
      dataset["annotations"].append(ann)
    det = _xywh(im["det_boxes"])
    det_rles = _rles(im, "det_masks", len(det))
    for i, (box, c, s) in enumerate(zip(det, np.asarray(im["det_classes"]),
                                        np.asarray(im["det_scores"]))):
      result = {"image_id": image_id, "category_id": int(c) + 1, "bbox": box.tolist(),
                "score": float(s)}
      if det_rles is not None:
        result["segmentation"] = det_rles[i]
      results.append(result)
  return dataset, results


def _rles(im: dict, key: str, count: int):
  """RLEs of the image's binary masks `key` [count, H, W] (None when absent)."""
  if key not in im:
    return None
  masks = np.asarray(im[key])
  expected = (count, int(im["height"]), int(im["width"]))
  if masks.shape != expected:
    raise ValueError(f"{key}: expected binary masks of shape {expected} [N, H, W], got "
                     f"{masks.shape}")
  from jaxvision.metrics.masks import encode
  return encode(masks)


def coco_evaluate(dataset: dict, results: list, iou_type: str = "bbox") -> dict:
  """COCOeval (`iou_type` "bbox", or "segm" for the masks) of `results` against `dataset`:
  {name: value for the 12 STAT_NAMES}.

  With no detections at all every number is 0 (pycocotools cannot load an empty result list).
  """
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  if iou_type not in ("bbox", "segm"):
    raise ValueError(f"iou_type: expected 'bbox' or 'segm', got {iou_type!r}")
  if iou_type == "segm" and not all("segmentation" in a for a in dataset["annotations"] + results):
    raise ValueError("iou_type: 'segm' needs masks for every true box and detection (gt_masks, "
                     "det_masks); got some without")
  results = [dict(r) for r in results]  # loadRes adds fields
  if not results:
    return dict.fromkeys(STAT_NAMES, 0.0)
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    dt = gt.loadRes(results)
    ev = COCOeval(gt, dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


class CocoEvaluator:
  """Accumulates images (pixel xyxy boxes, optionally binary image masks); `result()` gives the
  12 COCO numbers of the boxes, `result("segm")` those of the masks."""

  def __init__(self, num_classes: int):
    if num_classes < 1:
      raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
    self.num_classes = num_classes
    self._images = []

  def add(self, det_boxes, det_scores, det_classes, gt_boxes, gt_classes, *, height, width,
          gt_crowd=None, gt_area=None, gt_masks=None, det_masks=None):
    im = {"height": height, "width": width, "det_boxes": det_boxes, "det_scores": det_scores,
          "det_classes": det_classes, "gt_boxes": gt_boxes, "gt_classes": gt_classes}
    for key, value in (("gt_crowd", gt_crowd), ("gt_area", gt_area), ("gt_masks", gt_masks),
                       ("det_masks", det_masks)):
      if value is not None:
        im[key] = value
    self._images.append(im)

  def result(self, iou_type: str = "bbox") -> dict:
    return coco_evaluate(*to_coco_json(self._images, self.num_classes), iou_type=iou_type)
