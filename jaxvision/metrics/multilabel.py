"""Multi-label metrics over images: per-class average precision, mAP, and top-1.

`average_precision` is `sklearn.metrics.average_precision_score` for one class: images ranked
by decreasing score, tied scores form one operating point (all of them are accepted together),
and AP = sum_n (R_n - R_{n-1}) P_n over the distinct thresholds n (R_0 = 0), a step function
without interpolation (unlike VOC's). One documented difference: a class without positive
images has AP nan here (sklearn returns 0 with a warning), and `mean_average_precision` leaves
it out of the mean, as VOC does; sklearn's `average="macro"` would count it as 0.

`top1` is the multi-class top-1 accuracy generalised: the fraction of images whose
highest-scored class is one of their labels (with one label per image, argmax == label).

numpy, on the host: these run once per evaluation over all the split's scores.
"""

from __future__ import annotations

import numpy as np


def _check(labels, scores):
  labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
  if labels.shape != scores.shape:
    raise ValueError(f"labels: expected the scores' shape {scores.shape}, got {labels.shape}")
  if labels.size and not np.isin(labels, (0, 1)).all():
    raise ValueError(f"labels: expected 0/1 (multi-hot), got values {np.unique(labels)[:10]}")
  if not np.isfinite(scores).all():
    raise ValueError("scores: expected finite values, got nan or inf")
  return labels.astype(bool), scores


def average_precision(labels, scores) -> float:
  """AP of one class: `labels` [N] 0/1 and `scores` [N]; nan without positives."""
  labels, scores = _check(labels, scores)
  if labels.ndim != 1:
    raise ValueError(f"labels: expected one class's [N] labels, got shape {labels.shape}")
  positives = labels.sum()
  if positives == 0:
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  scores, labels = scores[order], labels[order]
  tp = np.cumsum(labels)
  # Last index of each group of tied scores: the operating points.
  last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
  tp = tp[last]
  precision = tp / (last + 1)
  recall = tp / positives
  return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def per_class_ap(labels, scores) -> np.ndarray:
  """AP of each class [K] from `labels` [N, K] 0/1 and `scores` [N, K]; nan without positives."""
  labels, scores = _check(labels, scores)
  if labels.ndim != 2:
    raise ValueError(f"labels: expected [N, K], got shape {labels.shape}")
  return np.array([average_precision(labels[:, k], scores[:, k]) for k in range(labels.shape[1])])


def mean_average_precision(labels, scores) -> float:
  """Mean of `per_class_ap` over the classes that have positives (nan if none has)."""
  aps = per_class_ap(labels, scores)
  return float(np.nanmean(aps)) if np.any(~np.isnan(aps)) else float("nan")


def top1(labels, scores) -> float:
  """Fraction of images whose highest-scored class (first on ties) is one of their labels."""
  labels, scores = _check(labels, scores)
  if labels.ndim != 2 or not len(labels):
    raise ValueError(f"labels: expected [N, K] with N >= 1, got shape {labels.shape}")
  best = np.argmax(scores, axis=1)
  return float(np.mean(labels[np.arange(len(labels)), best]))
