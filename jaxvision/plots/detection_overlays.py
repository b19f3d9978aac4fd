"""PNG images with true (green) and predicted (red, with class and score) boxes drawn."""

from __future__ import annotations

import pathlib

import numpy as np

TRUE_COLOUR = (0, 220, 0)
PREDICTED_COLOUR = (255, 40, 40)


def draw_boxes(image: np.ndarray, true_boxes, true_classes, boxes, scores, classes, *,
               class_names=None, scale: int = 1):
  """A PIL image: `image` [H, W, C] in [0, 255] enlarged `scale` times, with true boxes and
  predicted boxes (normalised (ymin, xmin, ymax, xmax)) drawn and labelled."""
  from PIL import Image, ImageDraw  # matplotlib's dependency

  pixels = np.clip(np.asarray(image, np.float32), 0, 255).astype(np.uint8)
  if pixels.shape[-1] == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  im = Image.fromarray(pixels)
  if scale > 1:
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
  draw = ImageDraw.Draw(im)
  size = np.array([im.height, im.width, im.height, im.width], np.float32)

  def name(c):
    return class_names[int(c)] if class_names is not None else str(int(c))

  for box, c in zip(np.asarray(true_boxes).reshape(-1, 4), np.asarray(true_classes)):
    y0, x0, y1, x1 = box * size
    draw.rectangle([x0, y0, x1, y1], outline=TRUE_COLOUR, width=2)
    draw.text((x0 + 2, y1 - 11), name(c), fill=TRUE_COLOUR)
  for box, s, c in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores), np.asarray(classes)):
    y0, x0, y1, x1 = box * size
    draw.rectangle([x0, y0, x1, y1], outline=PREDICTED_COLOUR, width=1)
    draw.text((x0 + 2, y0 + 1), f"{name(c)} {float(s):.2f}", fill=PREDICTED_COLOUR)
  return im


def save_detections(out_dir, images, targets: dict, detections: dict, *, class_names=None,
                    min_score: float = 0.3, scale: int | None = None, paint=None):
  """Writes `out_dir/{i:03d}.png` for each image; returns the paths.

  Args:
    images: [N, H, W, C] pixel values in [0, 255].
    targets: `boxes` [N, M, 4], `classes` [N, M], `valid` [N, M].
    detections: `boxes` [N, K, 4], `scores` [N, K], `classes` [N, K], `valid` [N, K]; those
      scoring at least `min_score` are drawn.
    scale: enlargement; default: enough to make the images at least 256 pixels high.
    paint: optional `paint(image, i, drawn)` -> the image to draw the boxes on, `drawn` the
      boolean [K] of image i's detections that are drawn (instance masks fill them in).
  """
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  images = np.asarray(images)
  scale = scale or max(1, 256 // images.shape[1])
  paths = []
  t = {k: np.asarray(targets[k]) for k in ("boxes", "classes", "valid")}
  d = {k: np.asarray(detections[k]) for k in ("boxes", "scores", "classes", "valid")}
  for i, image in enumerate(images):
    tv = t["valid"][i].astype(bool)
    dv = d["valid"][i].astype(bool) & (d["scores"][i] >= min_score)
    image = image if paint is None else paint(image, i, dv)
    im = draw_boxes(image, t["boxes"][i][tv], t["classes"][i][tv], d["boxes"][i][dv],
                    d["scores"][i][dv], d["classes"][i][dv], class_names=class_names, scale=scale)
    path = out_dir / f"{i:03d}.png"
    im.save(path)
    paths.append(path)
  return paths
