"""LSDA's regions (jaxvision.analysis.lsda): the candidate regions of an image, their labels and
sampling, their warped crops as training batches, and the per-class AP of scored regions.

Regions are pixel (x1, y1, x2, y2) boxes; a region's label is its class + 1 among the classes
a detector learns, 0 for background or -1 (padding: never sampled).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.metrics.voc import VOCEvaluator
from jaxvision.ops import clip_xyxy, nms, roi_align


# ---- regions and labels --------------------------------------------------------------------

def training_regions(gt_boxes, gt_valid, image_size: int, *, jittered: int = 32,
                     uniform: int = 32, seed: int = 0) -> np.ndarray:
  """Candidate regions [N, jittered + uniform, 4] (pixel xyxy inside the image) per image:
  valid ground-truth boxes shifted by up to 30% and rescaled by e^U(-0.4, 0.4) per side, and
  uniform boxes with sides in [image/8, image*5/8]. An image without objects gets uniform boxes
  only (its jittered slots too)."""
  rng = np.random.default_rng(seed)
  n = len(gt_boxes)
  pick = np.zeros((n, jittered), int)
  has = gt_valid.any(axis=1)
  for i in np.flatnonzero(has):
    pick[i] = rng.choice(np.flatnonzero(gt_valid[i]), jittered)
  base = np.take_along_axis(gt_boxes, pick[..., None], axis=1)
  wh = base[..., 2:] - base[..., :2]
  centre = (base[..., :2] + base[..., 2:]) / 2 + wh * rng.uniform(-0.3, 0.3, wh.shape)
  wh = wh * np.exp(rng.uniform(-0.4, 0.4, wh.shape))
  jitter = np.concatenate([centre - wh / 2, centre + wh / 2], axis=-1)
  side = rng.uniform(image_size / 8, image_size * 5 / 8, (n, jittered + uniform, 2))
  corner = rng.uniform(0, 1, side.shape) * (image_size - side)
  random_boxes = np.concatenate([corner, corner + side], axis=-1)
  jitter = np.where(has[:, None, None], jitter, random_boxes[:, :jittered])
  regions = np.concatenate([jitter, random_boxes[:, jittered:]], axis=1)
  regions = np.asarray(clip_xyxy(regions, image_size, image_size), np.float32)
  tiny = np.minimum(regions[..., 2] - regions[..., 0], regions[..., 3] - regions[..., 1]) < 2
  return np.where(tiny[..., None], random_boxes, regions).astype(np.float32)


def proposal_regions(data: dict) -> tuple[np.ndarray, np.ndarray]:
  """R-CNN's training regions from `jaxvision.data.proposals.split_proposals` output: each
  image's ground-truth boxes, then its Selective Search proposals: (boxes [N, G + K, 4],
  valid [N, G + K])."""
  regions = np.concatenate([data["boxes"], data["proposals"]], axis=1).astype(np.float32)
  return regions, np.concatenate([data["gt_valid"], data["proposal_valid"]], axis=1)


def sample_batch(rng, regions, labels, batch_images: int, per_image: int,
                 object_fraction: float = 0.25):
  """Picks `batch_images` images and `per_image` of their regions each, objects (label > 0)
  with total probability `object_fraction` where the image has any, never a region labelled
  -1 (padding): (image index [B], regions [B, R, 4], labels [B, R])."""
  images = rng.choice(len(regions), batch_images, replace=False)
  picked = []
  for i in images:
    obj, bg = labels[i] > 0, labels[i] == 0
    n_obj, n_bg = obj.sum(), bg.sum()
    if n_obj and n_bg:
      p = np.where(obj, object_fraction / n_obj, np.where(bg, (1 - object_fraction) / n_bg, 0.0))
    else:
      p = (obj | bg) / (n_obj + n_bg)
    picked.append(rng.choice(len(obj), per_image, p=p))
  picked = np.stack(picked)
  return (images, np.take_along_axis(regions[images], picked[..., None], axis=1),
          np.take_along_axis(labels[images], picked, axis=1))


def region_labels(regions, region_valid, data: dict, classes) -> np.ndarray:
  """Labels [N, M] of `regions` [N, M, 4] for a detector of `classes` (in order: label 1, 2,
  ...): the class of the ground truth (`data` boxes, classes, valid) of those classes that a
  region overlaps at IoU >= 0.5, else background 0; -1 where not `region_valid`."""
  from jaxvision.data.crops import label_windows  # TensorFlow on use only
  gt_classes = np.asarray(data["classes"])
  renumbered = np.zeros_like(gt_classes)
  for i, c in enumerate(classes):
    renumbered[gt_classes == c] = i
  kept = data["valid"] & np.isin(gt_classes, list(classes))
  labels = label_windows(regions, data["boxes"], renumbered, kept, object_iou=0.5,
                         background_iou=0.5)
  return np.where(region_valid, labels, -1).astype(np.int32)


# ---- warped crops ------------------------------------------------------------------------

def warp(images, boxes, size: int):
  """Regions `boxes` [B, R, 4] of `images` [B, H, W, C] warped to [B * R, size, size, C]."""
  crops = roi_align(images, boxes, size, spatial_scale=1.0, sampling_ratio=1, aligned=True)
  return crops.reshape(-1, size, size, images.shape[-1])


_warp_jit = jax.jit(warp, static_argnums=2)


def crop_batch(images, boxes, labels, crop: int, num_outputs: int) -> dict:
  """Warped regions `boxes` [B, R, 4] of `images` (raw pixels) as a classification batch:
  `image` float32 [B * R, crop, crop, C] in [0, 255] (the run's step normalises it), `label`
  [B * R] (class, or the last output `num_outputs - 1` for background)."""
  crops = np.asarray(_warp_jit(jnp.asarray(images, jnp.float32), jnp.asarray(boxes), crop))
  labels = np.where(labels > 0, labels - 1, num_outputs - 1).reshape(-1).astype(np.int32)
  return {"image": crops, "label": labels}


def region_batches(images, regions, labels, *, crop: int, batch_images: int, per_image: int,
                   num_outputs: int, seed: int):
  """`start_step -> iterator` of training batches (`crop_batch`) of `sample_batch` regions, each
  a function of (seed, step) only."""
  def batches(start_step: int):
    for step in itertools.count(start_step):
      rng = np.random.default_rng([seed, step])
      idx, boxes, y = sample_batch(rng, regions, labels, batch_images, per_image)
      yield crop_batch(images[idx], boxes, y, crop, num_outputs)
  return batches


def region_eval_set(images, regions, labels, *, crop: int, per_image: int, num_outputs: int,
                    seed: int) -> dict:
  """One fixed `crop_batch` of `per_image` sampled regions of every image (the fine-tuning's
  held-out check: region classification loss and accuracy)."""
  rng = np.random.default_rng([seed, 2**31])  # a stream no training step draws
  idx, boxes, y = sample_batch(rng, regions, labels, len(regions), per_image)
  return crop_batch(images[idx], boxes, y, crop, num_outputs)


def region_features(model, variables, images, proposals, valid, crop: int,
                    chunk: int = 512) -> np.ndarray:
  """Pooled last-stage features [N, P, D] of every valid proposal's warped crop (zero
  elsewhere), computed over the valid proposals of all images in fixed chunks (one compilation)."""
  @jax.jit
  def features(v, im, boxes):
    maps = model.apply(v, warp(im, boxes[:, None], crop), train=False, features=True)
    return jnp.mean(maps[-1], axis=(1, 2))

  image_index, box_index = np.nonzero(valid)
  out = None
  for start in range(0, len(image_index), chunk):
    real = np.arange(start, min(start + chunk, len(image_index)))
    sel = np.resize(real, chunk)
    f = np.asarray(features(variables, jnp.asarray(images[image_index[sel]]),
                            jnp.asarray(proposals[image_index[sel], box_index[sel]])))
    if out is None:
      out = np.zeros((*valid.shape, f.shape[-1]), np.float32)
    out[image_index[real], box_index[real]] = f[:len(real)]
  return out


# ---- evaluation ----------------------------------------------------------------------------

def padded_proposals(data: dict, limit: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `limit` ranked proposals per image; an image with none gets one dummy box
  (marked invalid) so every image keeps a fixed shape."""
  limit = max(1, min(limit, int(data["proposal_valid"].sum(axis=1).max())))
  proposals = data["proposals"][:, :limit]
  valid = data["proposal_valid"][:, :limit]
  h, w = data["images"].shape[1:3]
  proposals = np.where(valid[..., None], proposals, np.array([0, 0, w, h], np.float32))
  return proposals.astype(np.float32), valid


def evaluate(scores, proposals, proposal_valid, data, num_classes: int, classes,
             nms_iou: float = 0.3, max_detections: int = 100) -> np.ndarray:
  """VOC AP@0.5 [num_classes] (nan for classes not in `classes`) of per-class detections
  `scores` [N, P, >= num_classes] on `proposals` [N, P, 4], after per-class NMS."""
  run_nms = jax.jit(functools.partial(nms, iou_threshold=nms_iou, max_output_size=max_detections))
  evaluator = VOCEvaluator(num_classes, plus_one=False)
  for i in range(len(proposals)):
    boxes = proposals[i]
    det_boxes, det_scores, det_classes = [], [], []
    for c in classes:
      s = np.where(proposal_valid[i], scores[i][:, c], -np.inf).astype(np.float32)
      idx, valid = (np.asarray(a) for a in run_nms(jnp.asarray(boxes), jnp.asarray(s)))
      idx = idx[valid]
      det_boxes.append(boxes[idx])
      det_scores.append(s[idx])
      det_classes.append(np.full(len(idx), c))
    gt = data["gt_valid"][i]
    evaluator.add(np.concatenate(det_boxes or [np.zeros((0, 4))]),
                  np.concatenate(det_scores or [np.zeros(0)]),
                  np.concatenate(det_classes or [np.zeros(0, int)]),
                  data["boxes"][i][gt], data["classes"][i][gt], data["difficult"][i][gt])
  ap = evaluator.result()["ap_voc12"]
  out = np.full(num_classes, np.nan)
  out[list(classes)] = ap[list(classes)]
  return out
