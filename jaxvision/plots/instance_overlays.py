"""PNG images of instance segmentations: each predicted mask filled in its own colour over the
image, with the true (green) and predicted (red, class and score) boxes of `detection_overlays`."""

from __future__ import annotations

import numpy as np

from jaxvision.plots.detection_overlays import save_detections

# Distinct colours of the masks, in turn.
MASK_COLOURS = np.array([(31, 119, 180), (255, 127, 14), (148, 103, 189), (23, 190, 207),
                         (227, 119, 194), (188, 189, 34), (140, 86, 75), (127, 127, 127)],
                        np.float32)


def blend_masks(image: np.ndarray, masks, alpha: float = 0.5) -> np.ndarray:
  """`image` [H, W, C] in [0, 255] with binary `masks` [D, H, W] blended in (float [H, W, 3])."""
  out = np.asarray(image, np.float32)
  if out.shape[-1] == 1:
    out = np.repeat(out, 3, axis=-1)
  masks = np.asarray(masks).astype(bool)
  if masks.ndim != 3 or masks.shape[1:] != out.shape[:2]:
    raise ValueError(f"masks: expected [D, {out.shape[0]}, {out.shape[1]}] like the image, got "
                     f"{masks.shape}")
  out = out.copy()
  for k, mask in enumerate(masks):
    out[mask] = (1 - alpha) * out[mask] + alpha * MASK_COLOURS[k % len(MASK_COLOURS)]
  return out


def save_instances(out_dir, images, targets: dict, detections: dict, *, class_names=None,
                   min_score: float = 0.3, scale: int | None = None):
  """`detection_overlays.save_detections` with each drawn detection's mask filled in:
  `detections` also holds `masks` [N, K, H, W], binary image masks. Returns the paths."""
  masks = np.asarray(detections["masks"])
  return save_detections(out_dir, images, targets, detections, class_names=class_names,
                         min_score=min_score, scale=scale,
                         paint=lambda image, i, drawn: blend_masks(image, masks[i][drawn]))
