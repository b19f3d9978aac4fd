"""The R-CNN detection task: the detection task (jaxvision.training.detection_task) for the
R-CNN family: Faster R-CNN and Fast R-CNN (jaxvision.models.faster_rcnn), R-CNN and SPP-net
(jaxvision.models.rcnn, sppnet).

Same batches, checks, VOC/COCO evaluation and drawn detections as the YOLO task; what differs
is the model-side interface: the model gets the batch's targets in training (and in evaluation,
for the validation losses) and a "sampling" rng for its anchor and RoI sampling, and returns
the losses' inputs (`jaxvision.losses.rcnn`, each logged: `loss_classifier`, `loss_box_reg`,
plus `loss_objectness` and `loss_rpn_box_reg` for a model with an RPN, and the RoI
classification `accuracy`) and, in evaluation, pixel (x1, y1, x2, y2) detections that are
normalised here.

Proposals are batch fields: `proposals` (pixel boxes [B, P, 4]) and optionally
`proposal_valid` [B, P], passed to the model by `model_kwargs`. R-CNN and SPP-net need them in
every batch (e.g. Selective Search's, jaxvision.data.proposals); Fast R-CNN uses them when
given and its sliding windows otherwise; Faster R-CNN makes its own and refuses them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.losses.rcnn import per_image_losses, rcnn_losses
from jaxvision.models.faster_rcnn import FasterRCNN
from jaxvision.models.rcnn import RegionDetector
from jaxvision.models.roi_heads import SAMPLING_RNG
from jaxvision.ops.boxes import clip_yxyx, xyxy_to_yxyx
from jaxvision.training.detection_task import Detection, eval_record


def normalised_detections(detections: dict, image_hw) -> dict:
  """The model's pixel detections -> {boxes (normalised yxyx), scores, classes, valid}."""
  boxes = clip_yxyx(xyxy_to_yxyx(detections["boxes"], *image_hw))
  valid = detections["valid"]
  return {"boxes": jnp.where(valid[..., None], boxes, 0.0), "scores": detections["scores"],
          "classes": detections["labels"], "valid": valid}


def check_proposal_fields(batch: dict, *, required: bool, allowed: bool, model: str) -> None:
  """Raises unless the batch's `proposals` [B, P, 4] float and `proposal_valid` [B, P] bool
  are present where `required`, absent where not `allowed`, and well formed."""
  if "proposals" not in batch:
    if required:
      raise ValueError(f"batch: {model} classifies given region proposals; expected "
                       f"'proposals' (pixel x1, y1, x2, y2 boxes [B, P, 4]), got keys "
                       f"{sorted(batch)}")
    return
  if not allowed:
    raise ValueError(f"batch['proposals']: {model} makes its own proposals; expected a batch "
                     "without 'proposals'")
  proposals = np.asarray(batch["proposals"])
  b = np.shape(batch["image"])[0]
  if proposals.ndim != 3 or proposals.shape[0] != b or proposals.shape[2] != 4:
    raise ValueError(f"batch['proposals']: expected shape [{b}, P, 4], got {proposals.shape}")
  if not np.issubdtype(proposals.dtype, np.floating):
    raise TypeError(f"batch['proposals']: expected float pixel boxes, got dtype {proposals.dtype}")
  if "proposal_valid" in batch:
    valid = np.asarray(batch["proposal_valid"])
    if valid.shape != proposals.shape[:2] or valid.dtype != bool:
      raise ValueError(f"batch['proposal_valid']: expected bool of shape {proposals.shape[:2]}, "
                       f"got {valid.dtype} of shape {valid.shape}")


class RCNNDetection(Detection):
  """The R-CNN losses in training; VOC and COCO AP of the detections in evaluation."""

  rng_streams = (SAMPLING_RNG,)

  def __init__(self, model, num_classes: int, **kwargs):
    super().__init__(model, num_classes, **kwargs)
    self.needs_proposals = isinstance(model, RegionDetector)
    self.takes_proposals = self.needs_proposals or not model.use_rpn
    self._betas = {"box_beta": model.box_smooth_l1_beta}
    if isinstance(model, FasterRCNN):  # models without an RPN have no RPN losses
      self._betas["rpn_beta"] = model.rpn_smooth_l1_beta

  @staticmethod
  def check_model(model) -> None:
    if not isinstance(model, (FasterRCNN, RegionDetector)):
      raise ValueError(f"model: the rcnn_detection task needs an R-CNN model (faster_rcnn, "
                       f"fast_rcnn, rcnn, sppnet), got {type(model).__name__}")

  def check_batch(self, batch: dict, *, image_shape, num_classes: int) -> None:
    super().check_batch(batch, image_shape=image_shape, num_classes=num_classes)
    check_proposal_fields(batch, required=self.needs_proposals, allowed=self.takes_proposals,
                          model=type(self.model).__name__)

  def model_kwargs(self, batch: dict, *, train: bool) -> dict:
    del train  # evaluation computes the losses too
    kwargs = {"targets": {k: batch[k] for k in ("boxes", "classes", "valid")}}
    if "proposals" in batch:
      kwargs["proposals"] = batch["proposals"]
      kwargs["proposal_valid"] = batch.get("proposal_valid")
    return kwargs

  def _losses(self, outputs, per_image: bool):
    fn = per_image_losses if per_image else rcnn_losses
    return fn(outputs, **self._betas)

  def loss(self, outputs, batch) -> tuple[jax.Array, dict]:
    del batch  # the targets went through the model
    loss, terms = self._losses(outputs, per_image=False)
    return loss, {"loss": loss, **terms}

  def eval_outputs(self, outputs, batch) -> dict:
    """Per image: detections, targets, the summed losses and the RoI accuracy (gathered)."""
    loss, terms = self._losses(outputs, per_image=True)
    found = normalised_detections(outputs["detections"], batch["image"].shape[1:3])
    return eval_record(batch, found, loss, terms["accuracy"])

  def predict(self, state, images, proposals=None, proposal_valid=None) -> dict:
    """Normalised detections of `images` (on `proposals` [B, P, 4] where the model takes them)."""
    kwargs = {} if proposals is None else {"proposals": proposals,
                                           "proposal_valid": proposal_valid}
    outputs = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images,
                             train=False, **kwargs)
    return normalised_detections(outputs["detections"], images.shape[1:3])

  def on_train_end(self, state, config, workdir) -> None:
    """Draws detections as the YOLO task does; not for R-CNN and SPP-net, whose proposals the
    eval pipeline does not carry."""
    if not self.needs_proposals:
      super().on_train_end(state, config, workdir)
