"""Tasks: what a train step minimises and what an evaluation measures, for one kind of batch.

A task is the only part of the training core that knows the batch format. The train step
calls `task.loss(outputs, batch)`; the eval step returns `task.eval_outputs(outputs, batch)`,
which the loop feeds to `task.accumulator()` on the host (sums for classification; a
segmentation or detection task keeps confusion matrices or detections the same way).
New tasks register with `register_task` and are picked by `config.task`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxvision.losses import cross_entropy
from jaxvision.training.detection_task import Detection
from jaxvision.training.multilabel_task import MultiLabelClassification
from jaxvision.training.rcnn_task import RCNNDetection
from jaxvision.training.segmentation_task import Segmentation
from jaxvision.training.validation import check_batch


class SumAccumulator:
  """Adds up dicts of arrays (eval sums) over batches on the host."""

  def __init__(self, summarize: Callable[[dict], dict]):
    self._total, self._summarize = None, summarize

  def add(self, sums: dict) -> None:
    sums = jax.device_get(sums)
    self._total = sums if self._total is None else jax.tree.map(lambda a, b: a + b, self._total, sums)

  def result(self) -> dict:
    return self._summarize(self._total)


class Classification:
  """Softmax cross-entropy (with label smoothing) on `label`; accuracy and loss."""

  batch_keys = ("image", "label")
  # How eval_outputs combine over pmap devices ("sum": psum; "gather": all_gather).
  eval_reduce = "sum"

  def __init__(self, label_smoothing: float = 0.0):
    self.label_smoothing = label_smoothing

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


_TASKS: dict[str, Callable[..., object]] = {
    "classification": Classification,
    "multilabel_classification": MultiLabelClassification.from_config,
    "segmentation": Segmentation.from_config,
    "detection": Detection.from_config,
    "rcnn_detection": RCNNDetection.from_config,
}


def register_task(name: str, factory: Callable[..., object]) -> None:
  if name in _TASKS:
    raise ValueError(f"name: task {name!r} is already registered")
  _TASKS[name] = factory


def make_task(config):
  """The task named by `config.task`, built from the config's task options."""
  if config.task not in _TASKS:
    raise ValueError(f"config.task: unknown task {config.task!r}; expected one of {sorted(_TASKS)}")
  if config.task == "classification":
    return Classification(label_smoothing=config.label_smoothing)
  return _TASKS[config.task](config)
