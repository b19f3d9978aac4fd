"""PNG overlays of segmentation results: image | truth | prediction, side by side."""

from __future__ import annotations

import pathlib

import numpy as np

IGNORE_LABEL = 255
IGNORE_COLOUR = (255, 255, 255)


def palette(num_classes: int) -> np.ndarray:
  """uint8 [num_classes, 3]: the PASCAL VOC colour map (class 0, the background, is black)."""
  colours = np.zeros((num_classes, 3), np.uint8)
  for k in range(num_classes):
    c, r, g, b = k, 0, 0, 0
    for shift in range(7, -1, -1):
      r |= ((c >> 0) & 1) << shift
      g |= ((c >> 1) & 1) << shift
      b |= ((c >> 2) & 1) << shift
      c >>= 3
    colours[k] = (r, g, b)
  return colours


def colourize(mask: np.ndarray, num_classes: int) -> np.ndarray:
  """uint8 [H, W, 3] colours of an int mask; IGNORE_LABEL white."""
  colours = np.concatenate([palette(num_classes), np.array([IGNORE_COLOUR], np.uint8)])
  return colours[np.where(mask == IGNORE_LABEL, num_classes, np.clip(mask, 0, num_classes - 1))]


def overlay_strip(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray,
                  num_classes: int, alpha: float = 0.7) -> np.ndarray:
  """uint8 [H, 3W + 4, 3]: the image, then truth and prediction over it (class colours blended
  with weight `alpha` on labelled pixels; background (0) pixels dimmed)."""
  image = np.clip(np.asarray(image, np.float32), 0, 255)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  panels = [image]
  for mask in (truth, prediction):
    mask = np.asarray(mask)
    labelled = (mask != 0)[..., None]
    panels.append(np.where(labelled, (1 - alpha) * image + alpha * colourize(mask, num_classes),
                           0.4 * image))
  gap = np.full((image.shape[0], 2, 3), 255.0, np.float32)
  strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
  return np.round(strip).astype(np.uint8)


def save_overlays(out_dir, images, truths, predictions, num_classes: int | None = None):
  """Writes `out_dir/{i:03d}.png` strips (image | truth | prediction); returns the paths.

  Args:
    images: [N, H, W, C] pixel values in [0, 255].
    truths, predictions: int [N, H, W].
    num_classes: colour-map size; default: the largest label seen + 1.
  """
  from PIL import Image  # matplotlib's dependency

  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  truths, predictions = np.asarray(truths), np.asarray(predictions)
  if num_classes is None:
    labels = np.concatenate([truths[truths != IGNORE_LABEL].ravel(), predictions.ravel(), [0]])
    num_classes = int(labels.max()) + 1
  paths = []
  for i, (image, truth, prediction) in enumerate(zip(images, truths, predictions)):
    path = out_dir / f"{i:03d}.png"
    Image.fromarray(overlay_strip(image, truth, prediction, num_classes)).save(path)
    paths.append(path)
  return paths
