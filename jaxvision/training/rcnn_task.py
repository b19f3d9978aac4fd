"""The R-CNN detection task: the detection task (jaxvision.training.detection_task) for
Faster R-CNN and Fast R-CNN models (jaxvision.models.faster_rcnn).

Same batches, checks, VOC/COCO evaluation and drawn detections as the YOLO task; what differs
is the model-side interface: the model gets the batch's targets in training (and in evaluation,
for the validation losses) and a "sampling" rng for its anchor and RoI sampling, and returns
the four losses' inputs (`jaxvision.losses.rcnn`, each logged: `loss_objectness`,
`loss_rpn_box_reg`, `loss_classifier`, `loss_box_reg`, plus the RoI classification
`accuracy`) and, in evaluation, pixel (x1, y1, x2, y2) detections that are normalised here.
A batch may carry `proposals` (pixel boxes [B, P, 4]) and `proposal_valid` [B, P] for Fast
R-CNN; without them it uses its sliding windows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.losses.rcnn import per_image_losses, rcnn_losses
from jaxvision.models.faster_rcnn import SAMPLING_RNG, FasterRCNN
from jaxvision.ops.boxes import clip_yxyx, xyxy_to_yxyx
from jaxvision.training.detection_task import Detection, eval_record


def normalised_detections(detections: dict, image_hw) -> dict:
  """The model's pixel detections -> {boxes (normalised yxyx), scores, classes, valid}."""
  boxes = clip_yxyx(xyxy_to_yxyx(detections["boxes"], *image_hw))
  valid = detections["valid"]
  return {"boxes": jnp.where(valid[..., None], boxes, 0.0), "scores": detections["scores"],
          "classes": detections["labels"], "valid": valid}


class RCNNDetection(Detection):
  """The four R-CNN losses in training; VOC and COCO AP of the detections in evaluation."""

  rng_streams = (SAMPLING_RNG,)

  @staticmethod
  def check_model(model) -> None:
    if not isinstance(model, FasterRCNN):
      raise ValueError(f"model: the rcnn_detection task needs an R-CNN model (faster_rcnn, "
                       f"fast_rcnn), got {type(model).__name__}")

  def model_kwargs(self, batch: dict, train: bool) -> dict:
    del train  # evaluation computes the losses too
    kwargs = {"targets": {k: batch[k] for k in ("boxes", "classes", "valid")}}
    if "proposals" in batch:
      kwargs["proposals"] = batch["proposals"]
      kwargs["proposal_valid"] = batch.get("proposal_valid")
    return kwargs

  def _losses(self, outputs, per_image: bool):
    fn = per_image_losses if per_image else rcnn_losses
    return fn(outputs, rpn_beta=self.model.rpn_smooth_l1_beta,
              box_beta=self.model.box_smooth_l1_beta)

  def loss(self, outputs, batch) -> tuple[jax.Array, dict]:
    del batch  # the targets went through the model
    loss, terms = self._losses(outputs, per_image=False)
    return loss, {"loss": loss, **terms}

  def eval_outputs(self, outputs, batch) -> dict:
    """Per image: detections, targets, the summed losses and the RoI accuracy (gathered)."""
    loss, terms = self._losses(outputs, per_image=True)
    found = normalised_detections(outputs["detections"], batch["image"].shape[1:3])
    return eval_record(batch, found, loss, terms["accuracy"])

  def predict(self, state, images) -> dict:
    outputs = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images,
                             train=False)
    return normalised_detections(outputs["detections"], images.shape[1:3])
