"""YOLO targets and losses, built inside the jitted step from padded boxes.

Inputs: `boxes` [B, N, 4] as (ymin, xmin, ymax, xmax) normalised, `classes` int [B, N] and
`valid` bool [B, N]. A box belongs to the grid cell holding its centre; when several boxes fall
in one cell (YOLOv1) or one cell and anchor (YOLOv2), the one listed last is used (darknet's
loaders overwrite earlier ones the same way).

YOLOv1 (Redmon et al. 2016, eq. 3), summed over cells and boxes, averaged over images:
  lambda_coord * sum 1obj_ij [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
  + sum 1obj_ij (C - C^)^2 + lambda_noobj * sum 1noobj_ij C^2 + sum 1obj_i sum_c (p(c) - p^(c))^2
where predictor j of cell i is responsible (1obj_ij) for the cell's object when its box has the
highest IoU with it (while no predictor overlaps it, the nearest in squared error, as darknet
does); C^ is that IoU ("rescore"); every other predictor gets the no-object term.

YOLOv2 (darknet's region layer, which the paper trains with): the box goes to its cell's anchor
of best shape IoU; that prediction gets (2 - w h) weighted squared errors on sigmoid(tx, ty) and
(tw, th) = log(size / prior), objectness towards the IoU (lambda_obj) and softmax cross-entropy
on the class; all other predictions get lambda_noobj * objectness^2 unless they overlap some
box by more than `ignore_threshold`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxvision.models.yolo import YOLO, grid_offsets, split_v1, split_v2, v1_boxes, v2_boxes
from jaxvision.ops.anchors import shape_iou
from jaxvision.ops.boxes import box_iou, cxcywh_to_xyxy, iou, yxyx_to_cxcywh


def _cells(boxes, grid_size: int):
  """(cx, cy, w, h) [B, N, 4] and the (row, col) int32 [B, N] of the cells of the centres."""
  cxcywh = yxyx_to_cxcywh(boxes)
  cell = jnp.clip(jnp.floor(cxcywh[..., :2] * grid_size), 0, grid_size - 1).astype(jnp.int32)
  return cxcywh, cell[..., 1], cell[..., 0]


def _gather_last(slot, valid, num_slots: int, *values):
  """For each of `num_slots` slots, the values of the last valid box assigned to it.

  Returns (assigned bool [B, num_slots], each of `values` gathered to [B, num_slots, ...]).
  """
  n = slot.shape[1]
  hit = (slot[..., None] == jnp.arange(num_slots)) & valid[..., None]  # [B, N, M]
  owner = jnp.argmax(jnp.where(hit, jnp.arange(1, n + 1)[:, None], 0), axis=1)  # [B, M]
  gathered = []
  for v in values:
    index = owner.reshape(owner.shape + (1,) * (v.ndim - 2))
    gathered.append(jnp.take_along_axis(v, index, axis=1))
  return (hit.any(1), *gathered)


def _empty_targets(batch: int, shape: tuple[int, ...]):
  return {"object": jnp.zeros((batch, *shape), bool), "boxes": jnp.zeros((batch, *shape, 4)),
          "classes": jnp.zeros((batch, *shape), jnp.int32)}


def build_targets_v1(boxes, classes, valid, grid_size: int) -> dict:
  """YOLOv1 cell targets: {"object" bool [B, S, S], "boxes" (cx, cy, w, h) [B, S, S, 4],
  "classes" int32 [B, S, S]} (zero where a cell holds no object)."""
  b, n = classes.shape
  s = grid_size
  if n == 0:
    return _empty_targets(b, (s, s))
  cxcywh, row, col = _cells(boxes, s)
  has, tb, tc = _gather_last(row * s + col, valid, s * s, cxcywh, classes.astype(jnp.int32))
  return {"object": has.reshape(b, s, s),
          "boxes": jnp.where(has[..., None], tb, 0.0).reshape(b, s, s, 4),
          "classes": jnp.where(has, tc, 0).reshape(b, s, s)}


def build_targets_v2(boxes, classes, valid, grid_size: int, anchors) -> dict:
  """YOLOv2 targets per cell and anchor: {"object" [B, S, S, A], "boxes" (cx, cy, w, h)
  [B, S, S, A, 4], "classes" [B, S, S, A]}; each box goes to its cell's anchor of best shape
  IoU (the first of equal ones)."""
  b, n = classes.shape
  s, a = grid_size, len(anchors)
  if n == 0:
    return _empty_targets(b, (s, s, a))
  cxcywh, row, col = _cells(boxes, s)
  prior = jnp.asarray(anchors, jnp.float32)
  best = jnp.argmax(shape_iou(cxcywh[..., 2:].reshape(-1, 2), prior), -1).reshape(b, n)
  has, tb, tc = _gather_last((row * s + col) * a + best, valid, s * s * a, cxcywh,
                             classes.astype(jnp.int32))
  return {"object": has.reshape(b, s, s, a),
          "boxes": jnp.where(has[..., None], tb, 0.0).reshape(b, s, s, a, 4),
          "classes": jnp.where(has, tc, 0).reshape(b, s, s, a)}


def _iou_cxcywh(a, b):
  return jnp.nan_to_num(iou(cxcywh_to_xyxy(a), cxcywh_to_xyxy(b)))


def responsible_predictor(pred_boxes, target_boxes):
  """One-hot [B, S, S, n] of the predictor (image (cx, cy, w, h) boxes [B, S, S, n, 4]) whose box
  has the highest IoU with the cell's target [B, S, S, 4]; the least squared error when none
  overlaps it (darknet's rule; the paper's IoU alone would always pick predictor 0 then)."""
  t = target_boxes[..., None, :]
  overlap = _iou_cxcywh(pred_boxes, t)
  error = jnp.sum(jnp.square(pred_boxes - t), -1)
  key = jnp.where(jnp.max(overlap, -1, keepdims=True) > 0, overlap, -error)
  return jax.nn.one_hot(jnp.argmax(key, -1), pred_boxes.shape[-2], dtype=bool)


def yolov1_loss(outputs, targets: dict, *, num_boxes: int, lambda_coord: float = 5.0,
                lambda_noobj: float = 0.5, lambda_obj: float = 1.0, lambda_class: float = 1.0,
                rescore: bool = True):
  """The YOLOv1 loss of raw outputs [B, S, S, 5B + C] against `build_targets_v1` targets.

  Returns (loss, {"coord", "object", "noobject", "class", "accuracy"}); the terms are weighted
  and averaged over images, "accuracy" is the class accuracy over cells holding an object.
  """
  batch, s = outputs.shape[0], outputs.shape[1]
  xywh, conf, probs = split_v1(outputs, num_boxes)
  obj_cell = targets["object"]
  tb = targets["boxes"]
  pred = jax.lax.stop_gradient(v1_boxes(xywh))
  resp = responsible_predictor(pred, tb) & obj_cell[..., None]
  col, row = grid_offsets(s)
  target_xywh = jnp.stack([tb[..., 0] * s - col, tb[..., 1] * s - row,
                           jnp.sqrt(tb[..., 2]), jnp.sqrt(tb[..., 3])], -1)[..., None, :]
  coord = jnp.sum(resp * jnp.sum(jnp.square(xywh - target_xywh), -1))
  conf_target = _iou_cxcywh(pred, tb[..., None, :]) if rescore else 1.0
  obj = jnp.sum(resp * jnp.square(conf - conf_target))
  noobj = jnp.sum(~resp * jnp.square(conf))
  onehot = jax.nn.one_hot(targets["classes"], probs.shape[-1])
  cls = jnp.sum(obj_cell[..., None] * jnp.square(probs - onehot))
  terms = {"coord": lambda_coord * coord / batch, "object": lambda_obj * obj / batch,
           "noobject": lambda_noobj * noobj / batch, "class": lambda_class * cls / batch}
  loss = sum(terms.values())
  terms["accuracy"] = _accuracy(jnp.argmax(probs, -1), targets["classes"], obj_cell)
  return loss, terms


def yolov2_loss(outputs, targets: dict, gt_boxes, gt_valid, *, anchors, lambda_coord: float = 1.0,
                lambda_noobj: float = 1.0, lambda_obj: float = 5.0, lambda_class: float = 1.0,
                ignore_threshold: float = 0.6, rescore: bool = True):
  """The YOLOv2 loss of raw outputs [B, S, S, A(5 + C)] against `build_targets_v2` targets;
  `gt_boxes` [B, N, 4] (normalised yxyx) and `gt_valid` [B, N] decide which predictions are
  ignored by the no-object term. Returns (loss, terms) as `yolov1_loss`."""
  batch, s = outputs.shape[0], outputs.shape[1]
  num_anchors = len(anchors)
  t, obj_logit, logits = split_v2(outputs, num_anchors)
  resp = targets["object"]
  tb = targets["boxes"]
  pred = jax.lax.stop_gradient(v2_boxes(t, anchors))
  # Best IoU of every prediction with any box of its image.
  pred_yxyx = cxcywh_to_xyxy(pred)[..., jnp.array([1, 0, 3, 2])].reshape(batch, -1, 4)
  overlaps = jnp.where(gt_valid[:, None, :], jnp.nan_to_num(box_iou(pred_yxyx, gt_boxes)), 0.0)
  ignore = (jnp.max(overlaps, -1, initial=0.0) > ignore_threshold).reshape(resp.shape)

  col, row = grid_offsets(s)
  prior = jnp.asarray(anchors, jnp.float32)
  target_t = jnp.stack([tb[..., 0] * s - col[..., None], tb[..., 1] * s - row[..., None],
                        jnp.log(jnp.maximum(tb[..., 2], 1e-9) / prior[:, 0]),
                        jnp.log(jnp.maximum(tb[..., 3], 1e-9) / prior[:, 1])], -1)
  pred_t = jnp.concatenate([jax.nn.sigmoid(t[..., :2]), t[..., 2:]], -1)
  scale = 2.0 - tb[..., 2] * tb[..., 3]
  coord = jnp.sum(resp * scale * jnp.sum(jnp.square(pred_t - jnp.where(resp[..., None], target_t,
                                                                        0.0)), -1))
  objectness = jax.nn.sigmoid(obj_logit)
  obj_target = _iou_cxcywh(pred, tb) if rescore else 1.0
  obj = jnp.sum(resp * jnp.square(objectness - obj_target))
  noobj = jnp.sum((~resp & ~ignore) * jnp.square(objectness))
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets["classes"])
  cls = jnp.sum(resp * ce)
  terms = {"coord": lambda_coord * coord / batch, "object": lambda_obj * obj / batch,
           "noobject": lambda_noobj * noobj / batch, "class": lambda_class * cls / batch}
  loss = sum(terms.values())
  terms["accuracy"] = _accuracy(jnp.argmax(logits, -1), targets["classes"], resp)
  return loss, terms


def _accuracy(predicted, target, where):
  return jnp.sum((predicted == target) & where) / jnp.maximum(jnp.sum(where), 1)


def yolo_loss(model: YOLO, outputs, boxes, classes, valid):
  """The loss of `model`'s version and weights: targets from the padded boxes, then
  `yolov1_loss` or `yolov2_loss`. Returns (loss, terms)."""
  s = outputs.shape[1]
  weights = model.loss_weights()
  if model.version == 1:
    targets = build_targets_v1(boxes, classes, valid, s)
    return yolov1_loss(outputs, targets, num_boxes=model.num_boxes, **weights)
  targets = build_targets_v2(boxes, classes, valid, s, model.anchors)
  return yolov2_loss(outputs, targets, boxes, valid, anchors=model.anchors,
                     ignore_threshold=model.ignore_threshold, **weights)
