"""Training crops for a sliding-window classifier: object windows and background windows.

Windows are squares inside the image, as the sliding windows are (`jaxvision.models.
sliding_window`). A window is labelled by its best IoU with the ground truth: the object's
class + 1 at IoU >= `object_iou`, background (0) when every IoU is < `background_iou`, ignored
(-1) in between. Object windows are the ground-truth boxes' squares jittered in size and
position; background windows are uniform squares. Sampling and labelling are numpy on images
already in memory (`load_split` reads them once through the TFDS pipelines); `extract_crops`
warps them with the sliding windows' own crop-and-resize, so training and detection see the
same pixels.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.data.config import default_dataset_config
from jaxvision.ops.boxes import box_iou, yxyx_to_xyxy
from jaxvision.ops.crop import crop_and_resize


_box_iou = jax.jit(box_iou)


def label_windows(windows, gt_boxes, gt_classes, gt_valid=None, *, object_iou: float = 0.5,
                  background_iou: float = 0.3) -> np.ndarray:
  """Labels of `windows` [..., M, 4] against `gt_boxes` [..., N, 4] (x1, y1, x2, y2 pixels).

  Args:
    gt_classes: [..., N] object classes 0..C-1.
    gt_valid: [..., N] bool, False for padding rows (None: all valid).
    object_iou: best IoU at or above which a window takes its best object's class + 1.
    background_iou: best IoU below which a window is background (0).

  Returns:
    int32 [..., M]: class + 1, 0 (background) or -1 (ignored: between the thresholds).
  """
  if not 0.0 <= background_iou <= object_iou <= 1.0:
    raise ValueError(f"background_iou, object_iou: expected 0 <= background_iou <= object_iou "
                     f"<= 1, got {background_iou!r} and {object_iou!r}")
  windows, gt_boxes = np.asarray(windows, np.float32), np.asarray(gt_boxes, np.float32)
  gt_classes = np.asarray(gt_classes)
  if windows.shape[-1:] != (4,) or gt_boxes.shape[-1:] != (4,):
    raise ValueError(f"windows, gt_boxes: expected boxes [..., 4], got shapes {windows.shape} "
                     f"and {gt_boxes.shape}")
  if gt_classes.shape != gt_boxes.shape[:-1]:
    raise ValueError(f"gt_classes: expected shape {gt_boxes.shape[:-1]} to match gt_boxes, got "
                     f"{gt_classes.shape}")
  valid = (np.ones(gt_classes.shape, bool) if gt_valid is None
           else np.broadcast_to(np.asarray(gt_valid, bool), gt_classes.shape))
  if gt_boxes.shape[-2] == 0:
    return np.zeros(windows.shape[:-1], np.int32)
  iou = np.nan_to_num(np.asarray(_box_iou(windows, gt_boxes)), nan=0.0)
  iou = np.where(valid[..., None, :], iou, -1.0)
  best = iou.max(-1)
  cls = np.take_along_axis(gt_classes, iou.argmax(-1), axis=-1)
  return np.where(best >= object_iou, cls + 1,
                  np.where(best < background_iou, 0, -1)).astype(np.int32)


def _squares_inside(cx, cy, side, height: int, width: int) -> np.ndarray:
  """Squares of `side` centred near (cx, cy), shifted to lie inside the image."""
  side = np.clip(side, 1.0, min(height, width))
  x0 = np.clip(cx - side / 2, 0.0, width - side)
  y0 = np.clip(cy - side / 2, 0.0, height - side)
  return np.stack([x0, y0, x0 + side, y0 + side], -1)


def sample_windows(gt_boxes, gt_classes, gt_valid, image_size: Sequence[int],
                   rng: np.random.Generator, *, window_range: Sequence[float],
                   per_object: int = 3, background: int = 8, jitter: float = 0.15,
                   tries: int = 16, object_iou: float = 0.5, background_iou: float = 0.3):
  """Labelled training windows of a batch of images (see the module doc).

  Args:
    gt_boxes: [B, N, 4] (x1, y1, x2, y2) pixels; gt_classes [B, N]; gt_valid bool [B, N].
    image_size: (H, W) of the images.
    rng: numpy generator.
    window_range: (smallest, largest) side of the background windows (log-uniform).
    per_object: object windows kept per valid object (fewer if fewer tries pass object_iou).
    background: background windows kept per image.
    jitter: object windows' side is the box's longer side times exp(U(-jitter, jitter)), their
      centre moves by U(-jitter, jitter) times the side along each axis.
    tries: candidates drawn per object and (times `background`) per image.

  Returns:
    (image_index int32 [M], boxes float32 [M, 4], labels int32 [M]), labels in 1..C (object)
    or 0 (background).
  """
  gt_boxes = np.asarray(gt_boxes, np.float32)
  gt_classes, gt_valid = np.asarray(gt_classes), np.asarray(gt_valid, bool)
  if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4 or gt_valid.shape != gt_boxes.shape[:2]:
    raise ValueError(f"gt_boxes, gt_valid: expected [B, N, 4] and [B, N], got shapes "
                     f"{gt_boxes.shape} and {gt_valid.shape}")
  height, width = image_size
  lo, hi = window_range
  if not 0 < lo <= hi <= min(height, width):
    raise ValueError(f"window_range: expected 0 < smallest <= largest <= {min(height, width)} "
                     f"(the image side), got {tuple(window_range)!r}")
  b, n, _ = gt_boxes.shape
  labels = dict(object_iou=object_iou, background_iou=background_iou)
  # Object windows: [B, N, tries].
  x1, y1, x2, y2 = np.moveaxis(gt_boxes, -1, 0)
  side = np.maximum(x2 - x1, y2 - y1)[..., None] * np.exp(rng.uniform(-jitter, jitter,
                                                                     (b, n, tries)))
  cx = ((x1 + x2) / 2)[..., None] + rng.uniform(-jitter, jitter, (b, n, tries)) * side
  cy = ((y1 + y2) / 2)[..., None] + rng.uniform(-jitter, jitter, (b, n, tries)) * side
  obj = _squares_inside(cx, cy, side, height, width).reshape(b, n * tries, 4)
  obj_labels = label_windows(obj, gt_boxes, gt_classes, gt_valid, **labels).reshape(b, n, tries)
  ok = (obj_labels > 0) & gt_valid[..., None]
  obj_keep = ok & (np.cumsum(ok, -1) <= per_object)
  # Background windows: [B, background * tries].
  u = background * tries
  side = np.exp(rng.uniform(np.log(lo), np.log(hi), (b, u)))
  bg = _squares_inside(rng.uniform(0, width, (b, u)), rng.uniform(0, height, (b, u)), side,
                       height, width)
  bg_labels = label_windows(bg, gt_boxes, gt_classes, gt_valid, **labels)
  ok = bg_labels == 0
  bg_keep = ok & (np.cumsum(ok, -1) <= background)
  index = np.concatenate([np.nonzero(obj_keep.reshape(b, -1))[0], np.nonzero(bg_keep)[0]])
  boxes = np.concatenate([obj[obj_keep.reshape(b, -1)], bg[bg_keep]])
  out_labels = np.concatenate([obj_labels[obj_keep], bg_labels[bg_keep]])
  return index.astype(np.int32), boxes.astype(np.float32), out_labels.astype(np.int32)


def extract_crops(images, image_index, boxes, size: int, chunk: int = 512) -> np.ndarray:
  """Crops `boxes` [M, 4] of `images[image_index]` warped to size x size: [M, size, size, C]."""
  images = np.asarray(images, np.float32)
  image_index, boxes = np.asarray(image_index), np.asarray(boxes, np.float32)
  if images.ndim != 4 or boxes.shape != (len(image_index), 4):
    raise ValueError(f"images, boxes: expected [B, H, W, C] and [M, 4] with M = "
                     f"len(image_index) = {len(image_index)}, got shapes {images.shape} and "
                     f"{boxes.shape}")
  warp = jax.jit(lambda im, bx: crop_and_resize(im, bx[:, None], size)[:, 0])
  out = np.zeros((len(boxes), size, size, images.shape[-1]), np.float32)
  for start in range(0, len(boxes), chunk):
    idx = np.arange(start, min(start + chunk, len(boxes)))
    pad = np.resize(idx, chunk)  # a fixed chunk shape: one compilation
    out[idx] = np.asarray(warp(jnp.asarray(images[image_index[pad]]), jnp.asarray(boxes[pad])))[
        :len(idx)]
  return out


def load_split(name: str = "shapes_detection/64", split: str = "train", limit: int | None = None,
               data_dir: str | None = None) -> dict[str, np.ndarray]:
  """A detection split in memory, unaugmented: {"image" float32 [N, H, W, C] (normalised),
  "boxes" [N, max_boxes, 4] (x1, y1, x2, y2 pixels), "classes" int32, "valid" bool}.

  `split` "train" (its first epoch's order) or "test" (the evaluation split); `limit` examples
  at most.
  """
  from jaxvision.data import pipeline  # TensorFlow only here
  if split not in ("train", "test"):
    raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
  c = default_dataset_config()
  c.name, c.data_dir, c.crop_padding, c.flip = name, data_dir, 0, False
  info = pipeline.dataset_info(c)
  total = info.num_train if split == "train" else info.num_eval
  total = total if limit is None else min(total, limit)
  batch = 100
  if split == "train":
    batches = pipeline.train_batches(c, batch, seed=0)
  else:
    batches = pipeline.eval_batches(c, batch)
  parts = []
  for _ in range(-(-total // batch)):
    b = next(batches)
    keep = b["weight"] > 0 if "weight" in b else np.ones(len(b["image"]), bool)
    parts.append({k: b[k][keep] for k in ("image", "boxes", "classes", "valid")})
  out = {k: np.concatenate([p[k] for p in parts])[:total] for k in parts[0]}
  h, w = out["image"].shape[1:3]
  out["boxes"] = np.asarray(yxyx_to_xyxy(out["boxes"], h, w), np.float32)
  out["classes"] = out["classes"].astype(np.int32)
  return out
