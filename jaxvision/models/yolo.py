"""YOLO (Redmon et al. 2016) and the YOLOv2 anchor head (Redmon & Farhadi 2017).

The image is divided into an S x S grid: the backbone's last feature map (S = input size /
backbone stride), followed by a fully convolutional head (3x3 conv-BN-leaky ReLU layers and a
1x1 convolution to the predictions of every cell):

- YOLOv1 (`anchors=()`): per cell B boxes of 5 numbers (x, y, sqrt w, sqrt h, confidence) then C
  class probabilities: S x S x (5B + C), all linear as in the paper (x, y: the box centre's
  offset in the cell in [0, 1]; w, h: fractions of the image, predicted as square roots).
- YOLOv2 (`anchors` = A prior (w, h) as fractions of the image, e.g. from
  `jaxvision.ops.kmeans_anchors`): per cell and anchor (tx, ty, tw, th, to) then C class logits:
  S x S x A(5 + C). Centre `(col + sigmoid(tx)) / S`, size `prior * exp(tw)`, objectness
  `sigmoid(to)`, class probabilities `softmax`.

`decode` turns the raw output into boxes (ymin, xmin, ymax, xmax, normalised), scores and
classes; `detect` adds class-aware NMS to a fixed number of detections per image.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.backbones import make_backbone
from jaxvision.models.registry import register_model
from jaxvision.nn import residual
from jaxvision.nn.checks import check_images
from jaxvision.ops.boxes import cxcywh_to_yxyx, clip_yxyx
from jaxvision.ops.nms import batched_nms

# YOLOv2's VOC priors (yolo-voc.cfg, k-means with k = 5, in 13 x 13 grid cells) / 13.
VOC_ANCHORS = tuple((w / 13, h / 13) for w, h in (
    (1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892), (9.47112, 4.84053),
    (11.2364, 10.0071)))


class YOLO(nn.Module):
  """A YOLO detector: backbone feature map -> grid of box predictions [B, S, S, K] (float32).

  Attributes:
    backbone: a module whose `__call__(x, *, train, features=True)` returns its feature maps,
      shallow to deep; the last one is the grid.
    num_classes: C.
    num_boxes: B, boxes per cell (YOLOv1 only).
    anchors: A priors (w, h) as fractions of the image; empty for YOLOv1.
    grid_size: S expected from the backbone on the training images; 0 accepts any.
    head_width, head_depth: channels and number of the head's 3x3 conv-BN-leaky ReLU layers.
    lambda_coord, lambda_noobj, lambda_obj, lambda_class: loss weights (jaxvision.losses.yolo);
      None takes the paper's for the version (v1: 5, 0.5, 1, 1; v2: 1, 1, 5, 1).
    ignore_threshold: YOLOv2: no no-object loss for predictions overlapping a box by more.
    score_threshold, nms_iou_threshold, max_detections: decoding (`detect`).
    axis_name: BatchNorm statistics averaged over this mapped axis (pmap).
    dtype: computation dtype (parameters float32; output float32).
  """
  backbone: nn.Module
  num_classes: int
  num_boxes: int = 2
  anchors: Sequence[Sequence[float]] = ()
  grid_size: int = 0
  head_width: int = 256
  head_depth: int = 2
  lambda_coord: float | None = None
  lambda_noobj: float | None = None
  lambda_obj: float | None = None
  lambda_class: float | None = None
  ignore_threshold: float = 0.6
  score_threshold: float = 0.005
  nms_iou_threshold: float = 0.45
  max_detections: int = 100
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @property
  def version(self) -> int:
    return 2 if len(self.anchors) else 1

  @property
  def num_outputs(self) -> int:
    """K, the predictions per cell."""
    if self.version == 1:
      return 5 * self.num_boxes + self.num_classes
    return len(self.anchors) * (5 + self.num_classes)

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    self._check_options()
    y = self.backbone(x, train=train, features=True)[-1]
    if self.grid_size and y.shape[1:3] != (self.grid_size, self.grid_size):
      raise ValueError(f"x: the backbone turns images of shape {tuple(x.shape)} into a "
                       f"{y.shape[1]} x {y.shape[2]} grid; this YOLO expects grid_size="
                       f"{self.grid_size} (use images {x.shape[1] * self.grid_size // y.shape[1]} "
                       "pixels wide, or grid_size=0)")
    norm = residual.batch_norm(train, self.axis_name, self.dtype)
    for i in range(self.head_depth):
      y = residual.conv(self.head_width, 3, dtype=self.dtype, name=f"head_conv{i + 1}")(y)
      y = nn.leaky_relu(norm(name=f"head_bn{i + 1}")(y), 0.1)
    y = nn.Conv(self.num_outputs, (1, 1), kernel_init=nn.initializers.normal(0.01),
                dtype=self.dtype, name="predict")(y)
    return y.astype(jnp.float32)

  def _check_options(self):
    if self.num_classes < 1:
      raise ValueError(f"num_classes: expected >= 1, got {self.num_classes}")
    if self.version == 1 and self.num_boxes < 1:
      raise ValueError(f"num_boxes: expected >= 1, got {self.num_boxes}")
    for a in self.anchors:
      if len(a) != 2 or not all(0 < v for v in a):
        raise ValueError(f"anchors: expected (w, h) pairs of positive image fractions, got "
                         f"{tuple(map(tuple, self.anchors))}")

  def loss_weights(self) -> dict:
    """The loss weights with the version's defaults filled in."""
    defaults = ({"lambda_coord": 5.0, "lambda_noobj": 0.5, "lambda_obj": 1.0, "lambda_class": 1.0}
                if self.version == 1 else
                {"lambda_coord": 1.0, "lambda_noobj": 1.0, "lambda_obj": 5.0, "lambda_class": 1.0})
    return {k: v if getattr(self, k) is None else float(getattr(self, k))
            for k, v in defaults.items()}


def grid_offsets(grid_size: int):
  """(col, row) of every cell as float32 arrays [S, S] (row-major: [row, col])."""
  row, col = jnp.meshgrid(jnp.arange(grid_size, dtype=jnp.float32),
                          jnp.arange(grid_size, dtype=jnp.float32), indexing="ij")
  return col, row


def split_v1(outputs, num_boxes: int):
  """[B, S, S, 5B + C] -> (boxes [B, S, S, B, 4] as (x, y, sqrt w, sqrt h), confidence
  [B, S, S, B], class probabilities [B, S, S, C])."""
  preds = outputs[..., :5 * num_boxes].reshape(*outputs.shape[:-1], num_boxes, 5)
  return preds[..., :4], preds[..., 4], outputs[..., 5 * num_boxes:]


def split_v2(outputs, num_anchors: int):
  """[B, S, S, A(5 + C)] -> (t [B, S, S, A, 4], objectness logit [B, S, S, A], class logits
  [B, S, S, A, C])."""
  preds = outputs.reshape(*outputs.shape[:-1], num_anchors, -1)
  return preds[..., :4], preds[..., 4], preds[..., 5:]


def v1_boxes(xywh):
  """Cell-relative (x, y, sqrt w, sqrt h) [B, S, S, n, 4] -> image (cx, cy, w, h)."""
  s = xywh.shape[1]
  col, row = grid_offsets(s)
  cx = (col[..., None] + xywh[..., 0]) / s
  cy = (row[..., None] + xywh[..., 1]) / s
  return jnp.stack([cx, cy, jnp.square(xywh[..., 2]), jnp.square(xywh[..., 3])], -1)


def v2_boxes(t, anchors):
  """YOLOv2 (tx, ty, tw, th) [B, S, S, A, 4] -> image (cx, cy, w, h)."""
  s = t.shape[1]
  col, row = grid_offsets(s)
  prior = jnp.asarray(anchors, jnp.float32)
  cx = (col[..., None] + jax.nn.sigmoid(t[..., 0])) / s
  cy = (row[..., None] + jax.nn.sigmoid(t[..., 1])) / s
  wh = prior * jnp.exp(t[..., 2:4])
  return jnp.concatenate([jnp.stack([cx, cy], -1), wh], -1)


def decode(model: YOLO, outputs):
  """Raw outputs [B, S, S, K] -> every predicted box: (boxes [B, M, 4] (ymin, xmin, ymax, xmax)
  clipped to the image, class-specific scores [B, M], classes [B, M]), M = S * S * boxes per
  cell. Scores: confidence x class probability (v1), objectness x softmax (v2), of the most
  likely class."""
  batch = outputs.shape[0]
  if model.version == 1:
    xywh, conf, probs = split_v1(outputs, model.num_boxes)
    boxes = v1_boxes(xywh)
    cls = jnp.broadcast_to(jnp.argmax(probs, -1)[..., None], conf.shape)
    # Linear outputs: clipped at 0 so that two negatives never make a positive score.
    scores = jnp.maximum(conf, 0.0) * jnp.maximum(jnp.max(probs, -1), 0.0)[..., None]
  else:
    t, obj, logits = split_v2(outputs, len(model.anchors))
    boxes = v2_boxes(t, model.anchors)
    probs = jax.nn.softmax(logits, -1)
    cls = jnp.argmax(probs, -1)
    scores = jax.nn.sigmoid(obj) * jnp.max(probs, -1)
  boxes = clip_yxyx(cxcywh_to_yxyx(boxes))
  return (boxes.reshape(batch, -1, 4), scores.reshape(batch, -1),
          cls.reshape(batch, -1).astype(jnp.int32))


def select(boxes, scores, classes, *, iou_threshold: float, max_detections: int,
           score_threshold: float):
  """Class-aware NMS per image -> fixed-size {"boxes", "scores", "classes", "valid"}
  [B, max_detections, ...], by decreasing score; padding rows are zero and invalid."""

  def one(b, s, c):
    idx, valid = batched_nms(b, s, c, iou_threshold, max_detections, score_threshold)
    return {"boxes": jnp.where(valid[:, None], b[idx], 0.0),
            "scores": jnp.where(valid, s[idx], 0.0), "classes": jnp.where(valid, c[idx], 0),
            "valid": valid}

  return jax.vmap(one)(boxes, scores, classes)


def detect(model: YOLO, outputs):
  """Raw outputs -> fixed-size detections with the model's decoding settings."""
  return select(*decode(model, outputs), iou_threshold=model.nms_iou_threshold,
                max_detections=model.max_detections, score_threshold=model.score_threshold)


def _yolo(version: int, *, num_classes: int, backbone: str = "resnet18",
          backbone_options: dict | None = None, axis_name: str | None = None,
          dtype: Any = jnp.float32, anchors=None, **options) -> YOLO:
  net = make_backbone(backbone, backbone_options, num_classes=num_classes, axis_name=axis_name,
                      dtype=dtype)
  if version == 1:
    anchors = ()
  else:
    anchors = VOC_ANCHORS if anchors is None else tuple(tuple(float(v) for v in a) for a in anchors)
    if not anchors:
      raise ValueError("anchors: YOLOv2 needs at least one (w, h) prior")
  return YOLO(backbone=net, num_classes=num_classes, anchors=anchors, axis_name=axis_name,
              dtype=dtype, **options)


_COMMON = ("num_classes", "backbone", "backbone_options", "axis_name", "dtype", "grid_size",
           "head_width", "head_depth", "lambda_coord", "lambda_noobj", "lambda_obj",
           "lambda_class", "score_threshold", "nms_iou_threshold", "max_detections")
register_model("yolov1", functools.partial(_yolo, 1), _COMMON + ("num_boxes",))
register_model("yolov2", functools.partial(_yolo, 2), _COMMON + ("anchors", "ignore_threshold"))
