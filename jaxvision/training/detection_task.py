"""The detection task: the YOLO loss in training; decoded detections, VOC AP and COCO AP in
evaluation.

Batches: `image` float32 [B, H, W, C], `boxes` [B, N, 4] (ymin, xmin, ymax, xmax normalised),
`classes` int [B, N], `valid` bool [B, N]; in evaluation also `difficult` [B, N], `image_size`
[B, 2] (original height, width) and `weight` [B] (jaxvision.data.detection). The model is a
registered YOLO (jaxvision.models.yolo) whose options also hold the loss weights and the
decoding settings. Each eval step returns fixed-size decoded detections and the targets of
every image ("gather" over devices); the host accumulator scores them at the end: VOC mAP@0.5
(VOC2007 11-point and VOC2010+ all-point), the 12 COCOeval numbers, the mean loss and the
class accuracy of the cells (anchors) holding an object.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.losses.yolo import yolo_loss
from jaxvision.metrics.coco import STAT_NAMES, CocoEvaluator
from jaxvision.metrics.voc import VOCEvaluator
from jaxvision.models.yolo import YOLO, detect
from jaxvision.training.task import Accumulator, Task
from jaxvision.training.validation import check_image, check_keys


def _pixels(yxyx, height: float, width: float) -> np.ndarray:
  """Normalised (ymin, xmin, ymax, xmax) -> pixel (x1, y1, x2, y2), numpy on the host."""
  yxyx = np.asarray(yxyx, np.float64).reshape(-1, 4)
  return yxyx[:, [1, 0, 3, 2]] * np.array([width, height, width, height])


class DetectionAccumulator(Accumulator):
  """Collects gathered eval outputs on the host; `result()` scores them."""

  def __init__(self, num_classes: int, pixel_plus_one: bool, coco: bool = True):
    self.voc = VOCEvaluator(num_classes, plus_one=pixel_plus_one)
    self.coco = CocoEvaluator(num_classes) if coco else None
    self._loss, self._accuracy = [], []

  def add(self, outputs: dict) -> None:
    o = jax.device_get(outputs)
    for i in np.flatnonzero(np.asarray(o["weight"]) > 0):
      height, width = (float(v) for v in o["image_size"][i])
      dv, gv = o["det_valid"][i], o["valid"][i]
      det = (_pixels(o["det_boxes"][i][dv], height, width), o["det_scores"][i][dv],
             o["det_classes"][i][dv])
      gt_boxes = _pixels(o["boxes"][i][gv], height, width)
      gt_classes, difficult = o["classes"][i][gv], o["difficult"][i][gv]
      self.voc.add(*det, gt_boxes, gt_classes, difficult)
      if self.coco is not None:
        self.coco.add(*det, gt_boxes, gt_classes, height=height, width=width, gt_crowd=difficult)
      self._loss.append(float(o["loss"][i]))
      if o["objects"][i] > 0:
        self._accuracy.append(float(o["accuracy"][i]))

  def result(self) -> dict:
    out = {"loss": float(np.mean(self._loss)) if self._loss else float("nan"),
           "accuracy": float(np.mean(self._accuracy)) if self._accuracy else 0.0}
    voc = self.voc.result()
    out.update({"map_voc07": voc["map_voc07"], "map_voc12": voc["map_voc12"]})
    out.update({f"ap_voc12_{c}": float(v) for c, v in enumerate(voc["ap_voc12"])
                if not np.isnan(v)})
    if self.coco is not None:
      out.update({f"coco_{k}": v for k, v in self.coco.result().items()})
    return out


class Detection(Task):
  """YOLO loss (per-term metrics); VOC and COCO AP of the decoded detections in evaluation."""

  batch_keys = ("image", "boxes", "classes", "valid")
  eval_reduce = "gather"

  def __init__(self, model: YOLO, num_classes: int, *, pixel_plus_one: bool = False,
               coco: bool = True, num_overlays: int = 8, class_names=None):
    self.check_model(model)
    self.model, self.num_classes = model, num_classes
    self.pixel_plus_one, self.coco = pixel_plus_one, coco
    self.num_overlays, self.class_names = num_overlays, class_names

  @property
  def eval_metric_names(self) -> tuple[str, ...]:
    names = ("loss", "accuracy", "map_voc07", "map_voc12")
    names += tuple(f"ap_voc12_{c}" for c in range(self.num_classes))
    return names + (tuple(f"coco_{k}" for k in STAT_NAMES) if self.coco else ())

  @staticmethod
  def check_model(model) -> None:
    if not isinstance(model, YOLO):
      raise ValueError(f"model: the detection task needs a YOLO model (yolov1, yolov2), got "
                       f"{type(model).__name__}")

  @classmethod
  def from_config(cls, config, model=None) -> "Detection":
    """The task around `model`, the detector the run built from `config`."""
    from jaxvision.data import detection  # TensorFlow only here

    spec = detection.get_spec(config.dataset.name)
    return cls(model, spec.num_classes, pixel_plus_one=spec.pixel_plus_one)

  def loss(self, outputs, batch) -> tuple[jax.Array, dict]:
    loss, terms = yolo_loss(self.model, outputs, batch["boxes"], batch["classes"], batch["valid"])
    return loss, {"loss": loss, **terms}

  def eval_outputs(self, outputs, batch) -> dict:
    """Per image: detections, targets, loss and object-cell class accuracy (gathered)."""
    per_image = jax.vmap(lambda o, b, c, v: yolo_loss(self.model, o[None], b[None], c[None],
                                                      v[None]))
    loss, terms = per_image(outputs, batch["boxes"], batch["classes"], batch["valid"])
    return eval_record(batch, detect(self.model, outputs), loss, terms["accuracy"])

  def predict(self, state, images) -> dict:
    """Decoded detections {boxes (normalised yxyx), scores, classes, valid} of `images`."""
    return detect(self.model, state.apply_fn({"params": state.params,
                                              "batch_stats": state.batch_stats}, images,
                                             train=False))

  def accumulator(self) -> DetectionAccumulator:
    return DetectionAccumulator(self.num_classes, self.pixel_plus_one, self.coco)

  def check_batch(self, batch: dict, *, image_shape, num_classes: int) -> None:
    check_detection_batch(batch, image_shape=image_shape, num_classes=num_classes)

  def on_train_end(self, state, config, workdir) -> None:
    """Saves the first eval images with true (green) and predicted boxes as PNGs under
    `workdir/detections`."""
    if self.num_overlays <= 0:
      return
    self.save_overlays(pathlib.Path(workdir), *self.overlay_batch(state, config))

  def save_overlays(self, workdir: pathlib.Path, batch: dict, found: dict, pixels) -> None:
    """Draws `overlay_batch`'s images with their true and predicted boxes."""
    from jaxvision.plots.detection_overlays import save_detections

    save_detections(workdir / "detections", pixels, batch, found, class_names=self.class_names)

  def overlay_batch(self, state, config) -> tuple[dict, dict, np.ndarray]:
    """The first `num_overlays` eval images: their batch, the model's detections (host arrays)
    and their pixels in [0, 255]."""
    from jaxvision import data  # TensorFlow only here
    from jaxvision.data import detection

    batch = next(data.eval_batches(config.dataset, global_batch_size=config.eval_batch_size))
    keep = np.flatnonzero(batch["weight"] > 0)[:self.num_overlays]
    batch = {k: v[keep] for k, v in batch.items()}
    found = jax.device_get(jax.jit(self.predict)(state, batch["image"]))
    spec = detection.get_spec(config.dataset.name)
    pixels = (batch["image"] * np.asarray(spec.std) + np.asarray(spec.mean)) * 255.0
    return batch, found, pixels


def eval_record(batch: dict, detections: dict, loss, accuracy) -> dict:
  """What `DetectionAccumulator.add` reads, per image: `detections` {boxes (normalised yxyx),
  scores, classes, valid} [B, D, ...], the batch's targets, `loss` [B] and `accuracy` [B]."""
  d = detections
  n = batch["classes"].shape[0]
  size = jnp.broadcast_to(jnp.asarray(batch["image"].shape[1:3], jnp.int32), (n, 2))
  return {"det_boxes": d["boxes"], "det_scores": d["scores"], "det_classes": d["classes"],
          "det_valid": d["valid"], "boxes": batch["boxes"], "classes": batch["classes"],
          "valid": batch["valid"],
          "difficult": batch.get("difficult", jnp.zeros_like(batch["valid"])),
          "image_size": batch.get("image_size", size),
          "weight": batch.get("weight", jnp.ones((n,), jnp.float32)),
          "loss": loss, "accuracy": accuracy, "objects": jnp.sum(batch["valid"], axis=1)}


def check_detection_batch(batch: dict, *, image_shape, num_classes: int) -> None:
  """Raises ValueError/TypeError naming the field, what it holds and what was expected."""
  check_keys(batch, Detection.batch_keys)
  image = check_image(batch, image_shape)
  boxes, classes, valid = (np.asarray(batch[k]) for k in ("boxes", "classes", "valid"))
  b = image.shape[0]
  if boxes.ndim != 3 or boxes.shape[0] != b or boxes.shape[2] != 4:
    raise ValueError(f"batch['boxes']: expected shape [{b}, N, 4], got {boxes.shape}")
  n = boxes.shape[1]
  for key, value in (("classes", classes), ("valid", valid)):
    if value.shape != (b, n):
      raise ValueError(f"batch[{key!r}]: expected shape ({b}, {n}) like the boxes, got "
                       f"{value.shape}")
  if not np.issubdtype(classes.dtype, np.integer):
    raise TypeError(f"batch['classes']: expected integer class ids, got dtype {classes.dtype}")
  if valid.dtype != bool:
    raise TypeError(f"batch['valid']: expected bool, got dtype {valid.dtype}")
  if not valid.any():
    return  # images without objects are fine
  real, ids = boxes[valid], classes[valid]
  if not np.isfinite(real).all() or real.min() < 0 or real.max() > 1:
    raise ValueError(f"batch['boxes']: expected coordinates normalised to [0, 1], got values in "
                     f"[{np.nanmin(real):.4g}, {np.nanmax(real):.4g}]")
  inverted = (real[:, 2] < real[:, 0]) | (real[:, 3] < real[:, 1])
  if inverted.any():
    raise ValueError(f"batch['boxes']: expected (ymin, xmin, ymax, xmax) with ymin <= ymax and "
                     f"xmin <= xmax, got {real[inverted][0].tolist()}")
  if ids.min() < 0 or ids.max() >= num_classes:
    raise ValueError(f"batch['classes']: expected class ids in [0, {num_classes}) for valid boxes, "
                     f"got values in [{ids.min()}, {ids.max()}]")
