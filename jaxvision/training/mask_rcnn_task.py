"""The instance segmentation task: Mask R-CNN (jaxvision.models.mask_rcnn) on detection batches
with per-object masks.

As the R-CNN detection task (jaxvision.training.rcnn_task), plus: batches carry
`instance_masks` uint8 [B, N, H, W] (`dataset.instance_masks=True`), passed to the model as
`targets["masks"]`; the loss adds `loss_mask` (jaxvision.losses.mask_rcnn); evaluation pastes
each detection's 28 x 28 mask into the (input-sized) image at its box, thresholds it at 0.5 and
scores the masks with pycocotools (iouType "segm"): `mask_ap` (AP@[.5:.95]), `mask_ap50`,
`mask_ap75`, next to the box metrics. After training, the first eval images are drawn with their
masks under `workdir/instances` (and their boxes under `workdir/detections`).
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from jaxvision.losses.mask_rcnn import mask_rcnn_losses, per_image_mask_rcnn_losses
from jaxvision.metrics.coco import CocoEvaluator
from jaxvision.metrics.masks import paste_masks
from jaxvision.models.mask_rcnn import MaskRCNN
from jaxvision.training.detection_task import DetectionAccumulator, _pixels
from jaxvision.training.rcnn_task import RCNNDetection, normalised_detections

MASK_METRICS = {"mask_ap": "AP", "mask_ap50": "AP50", "mask_ap75": "AP75"}


def image_masks(masks, boxes, height: int, width: int) -> np.ndarray:
  """Binary [D, height, width] masks of RoI masks [D, M, M] over normalised yxyx boxes."""
  return paste_masks(masks, _pixels(boxes, height, width), height, width)


class MaskAccumulator(DetectionAccumulator):
  """The detection metrics plus the COCO mask AP of the pasted masks."""

  def __init__(self, num_classes: int, pixel_plus_one: bool):
    super().__init__(num_classes, pixel_plus_one, coco=True)
    self.segm = CocoEvaluator(num_classes)

  def add(self, outputs: dict) -> None:
    super().add(outputs)
    o = jax.device_get(outputs)
    height, width = np.shape(o["instance_masks"])[-2:]
    for i in np.flatnonzero(np.asarray(o["weight"]) > 0):
      dv, gv = o["det_valid"][i], o["valid"][i]
      boxes = o["det_boxes"][i][dv]
      self.segm.add(_pixels(boxes, height, width), o["det_scores"][i][dv],
                    o["det_classes"][i][dv], _pixels(o["boxes"][i][gv], height, width),
                    o["classes"][i][gv], height=height, width=width,
                    gt_crowd=o["difficult"][i][gv], gt_masks=o["instance_masks"][i][gv],
                    det_masks=image_masks(o["det_masks"][i][dv], boxes, height, width))

  def result(self) -> dict:
    out = super().result()
    segm = self.segm.result("segm")
    out.update({name: segm[key] for name, key in MASK_METRICS.items()})
    return out


class InstanceSegmentation(RCNNDetection):
  """Mask R-CNN: the R-CNN losses plus the mask loss; box and mask AP in evaluation."""

  batch_keys = RCNNDetection.batch_keys + ("instance_masks",)

  @property
  def eval_metric_names(self) -> tuple[str, ...]:
    return super().eval_metric_names + tuple(MASK_METRICS)

  @staticmethod
  def check_model(model) -> None:
    if not isinstance(model, MaskRCNN):
      raise ValueError(f"model: the instance_segmentation task needs a Mask R-CNN model "
                       f"(mask_rcnn), got {type(model).__name__}")

  @classmethod
  def from_config(cls, config, model=None) -> "InstanceSegmentation":
    if not config.dataset.instance_masks:
      raise ValueError("config.dataset.instance_masks: the instance_segmentation task trains on "
                       "per-object masks; expected True, got False")
    return super().from_config(config, model)

  def check_batch(self, batch: dict, *, image_shape, num_classes: int) -> None:
    super().check_batch(batch, image_shape=image_shape, num_classes=num_classes)
    if "instance_masks" not in batch:
      raise ValueError(f"batch: expected 'instance_masks' [B, N, H, W] (dataset.instance_masks="
                       f"True), got keys {sorted(batch)}")
    masks, boxes = np.asarray(batch["instance_masks"]), np.asarray(batch["boxes"])
    expected = (*boxes.shape[:2], *np.shape(batch["image"])[1:3])
    if masks.shape != expected:
      raise ValueError(f"batch['instance_masks']: expected shape {expected} [B, N, H, W], got "
                       f"{masks.shape}")

  def model_kwargs(self, batch: dict, *, train: bool) -> dict:
    kwargs = super().model_kwargs(batch, train=train)
    kwargs["targets"]["masks"] = batch["instance_masks"]
    return kwargs

  def _losses(self, outputs, per_image: bool):
    fn = per_image_mask_rcnn_losses if per_image else mask_rcnn_losses
    return fn(outputs, **self._betas)

  def eval_outputs(self, outputs, batch) -> dict:
    record = super().eval_outputs(outputs, batch)
    return {**record, "det_masks": outputs["detections"]["masks"],
            "instance_masks": batch["instance_masks"]}

  def accumulator(self) -> MaskAccumulator:
    return MaskAccumulator(self.num_classes, self.pixel_plus_one)

  def predict(self, state, images, proposals=None, proposal_valid=None) -> dict:
    """Normalised detections of `images` with `masks` [B, D, 28, 28] (probabilities over each
    box; `image_masks` pastes them)."""
    del proposals, proposal_valid  # Mask R-CNN makes its own
    outputs = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images,
                             train=False)
    found = normalised_detections(outputs["detections"], images.shape[1:3])
    return {**found, "masks": outputs["detections"]["masks"]}

  def save_overlays(self, workdir: pathlib.Path, batch: dict, found: dict, pixels) -> None:
    """The boxes (`workdir/detections`) and the instance masks (`workdir/instances`)."""
    super().save_overlays(workdir, batch, found, pixels)
    from jaxvision.plots.instance_overlays import save_instances

    height, width = batch["image"].shape[1:3]
    masks = np.stack([image_masks(m, b, height, width)
                      for m, b in zip(found["masks"], found["boxes"])])
    save_instances(workdir / "instances", pixels, batch, {**found, "masks": masks},
                   class_names=self.class_names)
