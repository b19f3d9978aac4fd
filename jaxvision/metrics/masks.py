"""Instance masks on the host: RoI masks pasted into the image, and COCO RLE encoding.

`paste_masks` puts each M x M mask (probabilities over a box, as Mask R-CNN predicts them) into
an H x W image: every pixel whose centre lies inside the box samples the mask bilinearly (mask
cell centres at (i + 0.5) / M of the box, edges clamped), and the result is thresholded.
"""

from __future__ import annotations

import numpy as np


def _taps(centres, start, length, m: int):
  """Bilinear taps (i0, i1, w1) into m cells spread over [start, start + length)."""
  pos = (centres - start) / max(length, 1e-6) * m - 0.5
  pos = np.clip(pos, 0.0, m - 1.0)
  i0 = np.minimum(np.floor(pos).astype(int), m - 1)
  i1 = np.minimum(i0 + 1, m - 1)
  return i0, i1, pos - i0


def paste_masks(masks, boxes, height: int, width: int, threshold: float = 0.5) -> np.ndarray:
  """Binary image masks from RoI masks.

  Args:
    masks: [D, M, M] values in [0, 1] over each box.
    boxes: [D, 4] pixel (x1, y1, x2, y2).
    height, width: the image's size.
    threshold: pixels whose sampled value is >= threshold are in the mask.

  Returns:
    uint8 [D, height, width].
  """
  masks = np.asarray(masks, np.float32)
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if masks.ndim != 3 or masks.shape[0] != boxes.shape[0] or masks.shape[1] != masks.shape[2]:
    raise ValueError(f"masks: expected [D, M, M] with D = {boxes.shape[0]} (one per box), got "
                     f"{masks.shape}")
  out = np.zeros((len(boxes), height, width), np.uint8)
  m = masks.shape[-1]
  for k, ((x1, y1, x2, y2), mask) in enumerate(zip(boxes, masks)):
    r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), height)
    c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), width)
    rows, cols = np.arange(r0, r1) + 0.5, np.arange(c0, c1) + 0.5
    rows, cols = rows[(rows >= y1) & (rows <= y2)], cols[(cols >= x1) & (cols <= x2)]
    if not len(rows) or not len(cols):
      continue
    a0, a1, wy = _taps(rows, y1, y2 - y1, m)
    b0, b1, wx = _taps(cols, x1, x2 - x1, m)
    top = mask[a0][:, b0] * (1 - wx) + mask[a0][:, b1] * wx
    bottom = mask[a1][:, b0] * (1 - wx) + mask[a1][:, b1] * wx
    value = top * (1 - wy)[:, None] + bottom * wy[:, None]
    ys, xs = (rows - 0.5).astype(int), (cols - 0.5).astype(int)
    out[k, ys[:, None], xs[None, :]] = value >= threshold
  return out


def encode(masks) -> list[dict]:
  """COCO compressed RLEs ({"size": [H, W], "counts": str}) of binary masks [D, H, W]."""
  from pycocotools import mask as mask_utils

  masks = np.asarray(masks, np.uint8)
  if masks.ndim != 3:
    raise ValueError(f"masks: expected binary masks [D, H, W], got shape {masks.shape}")
  if not len(masks):
    return []
  rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
  for rle in rles:
    rle["counts"] = rle["counts"].decode("ascii")
  return rles
