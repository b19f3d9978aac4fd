"""The multi-label classification task: per-class sigmoid cross-entropy; per-class AP and mAP.

Batches: `image` float32 [B, H, W, C] and either `labels` [B, K] multi-hot (a multi-label
dataset, jaxvision.data.multilabel) or the padded objects of a detection batch (`classes`
[B, N], `valid` [B, N]; the labels are the classes present), plus `weight` [B] in evaluation.
The model returns K logits, one binary classifier per class. Each eval step returns the
per-image scores (sigmoid) and labels ("gather" over devices); the host scores the whole split
at the end: loss, `map` (mean over classes of the per-class AP over images, equal to
sklearn's `average_precision_score`), `ap_<k>` per class, `top1` (the highest-scored class is
one of the image's labels) and `accuracy` (every class right at threshold 0.5).

Config: `task = "multilabel_classification"` (jaxvision.training.tasks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.losses.multilabel import multi_hot, sigmoid_cross_entropy
from jaxvision.metrics.multilabel import mean_average_precision, per_class_ap, top1
from jaxvision.training.task import Accumulator, Task
from jaxvision.training.validation import check_image, check_keys


def _targets(batch: dict, num_classes: int):
  if "labels" in batch:
    return batch["labels"].astype(jnp.float32)
  return multi_hot(batch["classes"], batch["valid"], num_classes)


class ScoreAccumulator(Accumulator):
  """Collects per-image scores and labels of real (weight > 0) rows; `result()` scores them."""

  def __init__(self):
    self._scores, self._labels, self._loss = [], [], []

  def add(self, outputs: dict) -> None:
    o = jax.device_get(outputs)
    keep = np.asarray(o["weight"]) > 0
    self._scores.append(np.asarray(o["scores"])[keep])
    self._labels.append(np.asarray(o["labels"])[keep])
    self._loss.append(np.asarray(o["loss"])[keep])

  def result(self) -> dict:
    scores, labels = np.concatenate(self._scores), np.concatenate(self._labels).round()
    out = {"loss": float(np.concatenate(self._loss).mean()),
           "map": mean_average_precision(labels, scores), "top1": top1(labels, scores),
           "accuracy": float(np.mean((scores > 0.5) == (labels > 0)))}
    out.update({f"ap_{k}": float(v) for k, v in enumerate(per_class_ap(labels, scores))
                if not np.isnan(v)})
    return out


class MultiLabelClassification(Task):
  """Sigmoid cross-entropy over classes; mAP, per-class AP and top-1 over the eval split."""

  batch_keys = ("image", "labels")
  eval_reduce = "gather"

  def __init__(self, num_classes: int):
    self.num_classes = num_classes

  @classmethod
  def from_config(cls, config, model=None) -> "MultiLabelClassification":
    del model
    from jaxvision import data  # TensorFlow only here
    return cls(data.dataset_info(config.dataset).num_classes)

  @property
  def eval_metric_names(self) -> tuple[str, ...]:
    return ("loss", "map", "top1", "accuracy") + tuple(f"ap_{k}" for k in range(self.num_classes))

  def loss(self, logits, batch) -> tuple[jax.Array, dict]:
    labels = _targets(batch, self.num_classes)
    loss = sigmoid_cross_entropy(logits, labels)
    return loss, {"loss": loss, "accuracy": jnp.mean((logits > 0) == (labels > 0.5))}

  def eval_outputs(self, logits, batch) -> dict:
    labels = _targets(batch, self.num_classes)
    n = labels.shape[0]
    return {"scores": jax.nn.sigmoid(logits.astype(jnp.float32)), "labels": labels,
            "loss": jax.vmap(sigmoid_cross_entropy)(logits, labels),
            "weight": batch.get("weight", jnp.ones((n,), jnp.float32))}

  def accumulator(self) -> ScoreAccumulator:
    return ScoreAccumulator()

  def check_batch(self, batch: dict, *, image_shape, num_classes: int) -> None:
    check_multilabel_batch(batch, image_shape=image_shape, num_classes=num_classes)


def check_multilabel_batch(batch: dict, *, image_shape, num_classes: int) -> None:
  """Raises ValueError/TypeError naming the field, what it holds and what was expected."""
  if "labels" not in batch and "classes" in batch:
    from jaxvision.training.detection_task import check_detection_batch
    check_detection_batch(batch, image_shape=image_shape, num_classes=num_classes)
    return
  check_keys(batch, MultiLabelClassification.batch_keys)
  image, labels = check_image(batch, image_shape), np.asarray(batch["labels"])
  if labels.shape != (image.shape[0], num_classes):
    raise ValueError(f"batch['labels']: expected multi-hot [B, K] = ({image.shape[0]}, "
                     f"{num_classes}), got shape {labels.shape}")
  if labels.size and not np.isin(labels, (0, 1)).all():
    raise ValueError(f"batch['labels']: expected 0/1 (multi-hot), got values "
                     f"{np.unique(labels)[:10].tolist()}")

