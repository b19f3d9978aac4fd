"""Recall of region proposals at K: the fraction of ground-truth boxes that one of the first K
proposals of their image covers with IoU >= a threshold (Uijlings et al. 2013; Hosang et al.
2015).

IoU is `jaxvision.ops.boxes.box_iou` (torchvision's: no +1, no epsilon) in float32; the
threshold is rounded to float32 before the comparison, so a proposal whose IoU is exactly
0.7 in real arithmetic counts at 0.7. "The first K" are the first K valid proposals in array
order (the ranking). numpy on the host, in chunks of images.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np

from jaxvision.ops.boxes import box_iou

_CHUNK = 128  # images per IoU computation
_box_iou = jax.jit(box_iou)  # one compilation per shape instead of one per operation


def _check(proposals, proposal_valid, gt_boxes, gt_valid):
  proposals, gt_boxes = np.asarray(proposals, np.float32), np.asarray(gt_boxes, np.float32)
  proposal_valid, gt_valid = np.asarray(proposal_valid), np.asarray(gt_valid)
  if proposals.ndim != 3 or proposals.shape[-1] != 4:
    raise ValueError(f"proposals: expected [N, K, 4], got shape {proposals.shape}")
  n = proposals.shape[0]
  if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4 or gt_boxes.shape[0] != n:
    raise ValueError(f"gt_boxes: expected [{n}, G, 4] (N from proposals), got shape "
                     f"{gt_boxes.shape}")
  for name, mask, want in (("proposal_valid", proposal_valid, proposals.shape[:2]),
                           ("gt_valid", gt_valid, gt_boxes.shape[:2])):
    if mask.shape != want or mask.dtype != bool:
      raise ValueError(f"{name}: expected bool {want}, got {mask.dtype} {mask.shape}")
  return proposals, proposal_valid, gt_boxes, gt_valid


def first_covering_rank(proposals, proposal_valid, gt_boxes, gt_valid, iou_thresholds):
  """[T, N, G] rank (0-based, among the image's valid proposals) of the first proposal with
  IoU >= each threshold with each ground-truth box; inf where none does (and for padding)."""
  proposals, proposal_valid, gt_boxes, gt_valid = _check(proposals, proposal_valid, gt_boxes,
                                                         gt_valid)
  thresholds = np.asarray(iou_thresholds, np.float32)
  rank = np.where(proposal_valid, np.cumsum(proposal_valid, axis=1) - 1, np.inf)  # [N, K]
  out = np.full((len(thresholds), *gt_boxes.shape[:2]), np.inf)
  for start in range(0, proposals.shape[0], _CHUNK):
    part = slice(start, start + _CHUNK)
    overlap = np.asarray(_box_iou(proposals[part], gt_boxes[part]))  # [n, K, G] float32
    for t, threshold in enumerate(thresholds):
      hit = overlap >= threshold  # nan (two empty boxes) never hits
      first = np.where(hit, rank[part, :, None], np.inf).min(axis=1, initial=np.inf)
      out[t, part] = np.where(gt_valid[part], first, np.inf)
  return out


def proposal_recall(proposals, proposal_valid, gt_boxes, gt_valid, *, ks=(10, 100, 1000),
                    iou_thresholds=(0.5, 0.7)) -> dict:
  """Recall of the first K proposals of each image, for each K and IoU threshold.

  Args:
    proposals: float [N, K, 4] corner boxes (pixel xyxy), ranked best-first.
    proposal_valid: bool [N, K], False for padding.
    gt_boxes: float [N, G, 4] ground truth in the same format.
    gt_valid: bool [N, G], False for padding; images may have no ground truth.
    ks: numbers of proposals (ints >= 1; beyond an image's count means all of them).
    iou_thresholds: IoU thresholds in (0, 1].

  Returns:
    dict: `recall` float64 [len(iou_thresholds), len(ks)] (nan when there is no ground
    truth at all), `ks`, `iou_thresholds` (as given), `num_gt` (valid ground-truth boxes)
    and `mean_proposals` (valid proposals per image).
  """
  ks, iou_thresholds = tuple(ks), tuple(iou_thresholds)
  if not ks or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1
                       for k in ks):
    raise ValueError(f"ks: expected a non-empty sequence of ints >= 1, got {ks!r}")
  if not iou_thresholds or not all(isinstance(t, numbers.Real) and 0 < t <= 1
                                   for t in iou_thresholds):
    raise ValueError(f"iou_thresholds: expected a non-empty sequence of numbers in (0, 1], "
                     f"got {iou_thresholds!r}")
  first = first_covering_rank(proposals, proposal_valid, gt_boxes, gt_valid, iou_thresholds)
  valid = np.asarray(gt_valid)
  num_gt = int(valid.sum())
  covered = first[:, valid][:, :, None] < np.asarray(ks, np.float64)  # [T, num_gt, len(ks)]
  recall = covered.mean(axis=1) if num_gt else np.full((len(iou_thresholds), len(ks)), np.nan)
  per_image = np.asarray(proposal_valid).sum(axis=1)
  return {"recall": recall, "ks": ks, "iou_thresholds": iou_thresholds, "num_gt": num_gt,
          "mean_proposals": float(per_image.mean()) if per_image.size else float("nan")}
