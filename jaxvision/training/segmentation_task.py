"""The semantic-segmentation task: per-pixel cross-entropy; pixel accuracy and IoU in evaluation.

Batches: `image` float32 [B, H, W, C], `mask` int32 [B, H, W] with 255 = ignore, and in
evaluation `weight` [B] (0 for padding rows). The model returns logits [B, H, W, K]. Each eval
step returns a confusion matrix (summed over batches and devices), so mean IoU is exact over
the whole eval split. At the end of training, overlays (image | truth | prediction) of the
first eval images are saved as PNGs under `workdir/overlays`.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.losses.segmentation import IGNORE_LABEL, pixel_cross_entropy_sum, valid_pixels
from jaxvision.metrics.segmentation import confusion_matrix, segmentation_scores
from jaxvision.training.task import SumAccumulator, Task, shard_mean
from jaxvision.training.validation import check_image, check_keys


class Segmentation(Task):
  """Per-pixel softmax cross-entropy over non-ignored pixels; loss, pixel accuracy, IoU, mIoU.

  `num_classes` (the model's, when known) only names the per-class `iou_<k>` eval metrics.
  """

  batch_keys = ("image", "mask")
  eval_reduce = "sum"

  def __init__(self, num_overlays: int = 8, num_classes: int | None = None):
    self.num_overlays, self.num_classes = num_overlays, num_classes

  @classmethod
  def from_config(cls, config, model=None) -> "Segmentation":
    del config  # nothing to configure yet
    return cls(num_classes=None if model is None else model.num_classes)

  @property
  def eval_metric_names(self) -> tuple[str, ...]:
    return ("loss", "accuracy", "miou") + tuple(f"iou_{k}" for k in range(self.num_classes or 0))

  def loss(self, logits, batch) -> tuple[jax.Array, dict]:
    return self._pixel_means(logits, batch, axis_name=None)

  def shard_loss(self, logits, batch, axis_name: str) -> tuple[jax.Array, dict]:
    return self._pixel_means(logits, batch, axis_name)

  @staticmethod
  def _pixel_means(logits, batch, axis_name: str | None) -> tuple[jax.Array, dict]:
    """Cross-entropy and accuracy over the valid pixels of the whole (global) batch."""
    mask = batch["mask"]
    total, count = pixel_cross_entropy_sum(logits, mask)
    correct = jnp.sum((jnp.argmax(logits, -1) == mask) * valid_pixels(mask))
    ce = shard_mean(total, count, axis_name)
    return ce, {"loss": ce, "accuracy": shard_mean(correct, count, axis_name)}

  def eval_outputs(self, logits, batch) -> dict:
    mask = batch["mask"]
    weights = batch.get("weight")
    total, count = pixel_cross_entropy_sum(logits, mask, weights)
    return {"loss": total, "pixels": count,
            "confusion": confusion_matrix(mask, jnp.argmax(logits, -1), logits.shape[-1], weights)}

  def accumulator(self) -> SumAccumulator:
    return SumAccumulator(self.summarize)

  @staticmethod
  def summarize(sums: dict) -> dict:
    scores = segmentation_scores(sums["confusion"])
    out = {"loss": float(sums["loss"]) / max(float(sums["pixels"]), 1.0),
           "accuracy": scores["pixel_accuracy"], "miou": scores["miou"]}
    out.update({f"iou_{k}": float(v) for k, v in enumerate(scores["iou"]) if not np.isnan(v)})
    return out

  def check_batch(self, batch: dict, *, image_shape, num_classes: int) -> None:
    check_segmentation_batch(batch, image_shape=image_shape, num_classes=num_classes)

  def on_train_end(self, state, config, workdir) -> None:
    """Saves overlays of the first eval images: image | truth | prediction."""
    if self.num_overlays <= 0 or jax.process_index() != 0:
      return
    from jaxvision import data  # TensorFlow only here
    from jaxvision.plots.segmentation_overlays import save_overlays

    batch = next(data.eval_batches(config.dataset, global_batch_size=config.eval_batch_size))
    keep = batch["weight"] > 0
    images, masks = batch["image"][keep][:self.num_overlays], batch["mask"][keep][:self.num_overlays]
    predict = jax.jit(lambda s, x: jnp.argmax(
        s.apply_fn({"params": s.params, "batch_stats": s.batch_stats}, x, train=False), -1))
    predictions = np.asarray(predict(state, images))
    spec = data.get_spec(config.dataset.name)
    pixels = (images * np.asarray(spec.std) + np.asarray(spec.mean)) * 255.0
    save_overlays(pathlib.Path(workdir) / "overlays", pixels, masks, predictions, spec.num_classes)


def check_segmentation_batch(batch: dict, *, image_shape, num_classes: int) -> None:
  """Raises ValueError/TypeError naming the field, what it holds and what was expected."""
  check_keys(batch, ("image", "mask"))
  image, mask = check_image(batch, image_shape), np.asarray(batch["mask"])
  if mask.shape != image.shape[:3]:
    raise ValueError(f"batch['mask']: expected the image's [B, H, W] = {image.shape[:3]}, got "
                     f"shape {mask.shape}")
  if not np.issubdtype(mask.dtype, np.integer):
    raise TypeError(f"batch['mask']: expected integer class ids, got dtype {mask.dtype}")
  bad = (mask != IGNORE_LABEL) & ((mask < 0) | (mask >= num_classes))
  if bad.any():
    values = sorted(set(np.unique(mask[bad]).tolist()))[:10]
    raise ValueError(f"batch['mask']: expected labels in [0, {num_classes}) or {IGNORE_LABEL} "
                     f"(ignore), got {values}")
