"""The classification task: softmax cross-entropy (with label smoothing) on `label`; loss and
accuracy in evaluation.

Batches: `image` float32 [B, H, W, C], `label` int32 [B], and in evaluation `weight` [B] (0 for
padding rows). The model returns logits [B, K]. Each eval step returns weighted sums (added
over batches and devices), so the metrics are exact over the whole eval split.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.losses import cross_entropy
from jaxvision.training.task import SumAccumulator, Task
from jaxvision.training.validation import check_batch


class Classification(Task):
  """Softmax cross-entropy (with label smoothing) on `label`; accuracy and loss."""

  batch_keys = ("image", "label")
  eval_reduce = "sum"
  eval_metric_names = ("loss", "accuracy")

  def __init__(self, label_smoothing: float = 0.0):
    self.label_smoothing = label_smoothing

  @classmethod
  def from_config(cls, config, model=None) -> "Classification":
    del model
    return cls(label_smoothing=config.label_smoothing)

  def loss(self, logits, batch) -> tuple[jax.Array, dict]:
    ce = cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
    return ce, {"loss": ce, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

  def eval_outputs(self, logits, batch) -> dict:
    labels = batch["label"]
    weights = batch.get("weight", jnp.ones(labels.shape, jnp.float32))
    return {"loss": cross_entropy(logits, labels, weights=weights) * weights.sum(),
            "correct": jnp.sum((jnp.argmax(logits, -1) == labels) * weights),
            "count": weights.sum()}

  def accumulator(self) -> SumAccumulator:
    return SumAccumulator(self.summarize)

  @staticmethod
  def summarize(sums: dict) -> dict:
    count = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss"]) / count, "accuracy": float(sums["correct"]) / count}

  def check_batch(self, batch: dict, *, image_shape, num_classes: int) -> None:
    check_batch(batch, image_shape=image_shape, num_classes=num_classes)
