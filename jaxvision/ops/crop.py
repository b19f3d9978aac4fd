"""Crop-and-resize of pixel boxes: RoIAlign with pixel centres aligned (sliding windows, crops)."""

from __future__ import annotations

from jaxvision.ops.roi import roi_align


def crop_and_resize(images, boxes, size: int, sampling_ratio: int = 0):
  """Crops `boxes` [B, K, 4] (x1, y1, x2, y2 pixels) from `images` [B, H, W, C] and warps each to
  size x size: RoIAlign with pixel centres aligned (`sampling_ratio <= 0`: ceil(side / size)
  bilinear samples per output pixel). Returns [B, K, size, size, C]."""
  return roi_align(images, boxes, size, sampling_ratio=sampling_ratio, aligned=True)
