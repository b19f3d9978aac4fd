"""Segmentation metrics from a confusion matrix accumulated over batches.

`confusion_matrix` runs inside the jitted eval step (one [K, K] matrix per batch, rows the true
class, columns the predicted one, as `sklearn.metrics.confusion_matrix`); the host adds the
batches' matrices and `segmentation_scores` turns the total into pixel accuracy, per-class IoU
`TP / (TP + FP + FN)` and their mean. Pixels labelled 255 (and rows of weight 0) are left out.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxvision.losses.segmentation import valid_pixels


def confusion_matrix(mask, predictions, num_classes: int, weights=None):
  """int32 [K, K]: entry (t, p) counts the valid pixels of true class t predicted as p.

  Args:
    mask: int [B, H, W] true labels in [0, K) or 255 (ignored).
    predictions: int [B, H, W] predicted labels in [0, K).
    num_classes: K.
    weights: optional [B]; rows of weight 0 (eval padding) are left out.
  """
  valid = valid_pixels(mask, weights).astype(jnp.int32)
  index = jnp.where(valid > 0, mask, 0) * num_classes + predictions
  counts = jnp.bincount(index.ravel(), weights=valid.ravel(), length=num_classes * num_classes)
  return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def segmentation_scores(confusion) -> dict:
  """Pixel accuracy, per-class IoU and mean IoU of a (summed) confusion matrix.

  Returns:
    {"pixel_accuracy": float, "iou": float64 [K], "miou": float}. The IoU of a class that is
    neither in the truth nor in the predictions is NaN and left out of the mean.
  """
  cm = np.asarray(confusion, np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"confusion: expected a square [K, K] matrix, got shape {cm.shape}")
  tp = np.diag(cm)
  union = cm.sum(0) + cm.sum(1) - tp
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, tp / union, np.nan)
  total = cm.sum()
  present = ~np.isnan(iou)
  return {"pixel_accuracy": float(tp.sum() / total) if total else float("nan"), "iou": iou,
          "miou": float(iou[present].mean()) if present.any() else float("nan")}
