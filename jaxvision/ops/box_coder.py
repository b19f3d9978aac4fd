"""The R-CNN box parameterisation (Girshick et al. 2014, appendix C), as torchvision's BoxCoder.

A box (x1, y1, x2, y2) relative to a reference box (an anchor or a proposal) of centre
(xa, ya) and size (wa, ha) is coded as
  dx = wx (x - xa) / wa,  dy = wy (y - ya) / ha,  dw = ww log(w / wa),  dh = wh log(h / ha)
with (x, y, w, h) the box's centre and size and `weights` (wx, wy, ww, wh): (1, 1, 1, 1) for
the RPN and (10, 10, 5, 5) for the Fast R-CNN head in torchvision. Decoding clamps dw and dh
at log(1000 / 16) before the exponential, so that a wild prediction cannot overflow.
Corner boxes only, any leading axes; pure jnp.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _centres(boxes):
  x1, y1, x2, y2 = jnp.moveaxis(boxes, -1, 0)
  w, h = x2 - x1, y2 - y1
  return x1 + 0.5 * w, y1 + 0.5 * h, w, h


def _check(boxes, name: str):
  boxes = jnp.asarray(boxes)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"{name}: expected (x1, y1, x2, y2) boxes [..., 4], got shape "
                     f"{tuple(boxes.shape)}")
  return boxes


def _weights(weights):
  if len(weights) != 4:
    raise ValueError(f"weights: expected (wx, wy, ww, wh), got {weights!r}")
  return tuple(float(w) for w in weights)


def encode_boxes(boxes, reference, weights=(1.0, 1.0, 1.0, 1.0)):
  """(dx, dy, dw, dh) [..., 4] of `boxes` relative to `reference` (both [..., 4], broadcast)."""
  wx, wy, ww, wh = _weights(weights)
  gx, gy, gw, gh = _centres(_check(boxes, "boxes"))
  rx, ry, rw, rh = _centres(_check(reference, "reference"))
  return jnp.stack([wx * (gx - rx) / rw, wy * (gy - ry) / rh, ww * jnp.log(gw / rw),
                    wh * jnp.log(gh / rh)], axis=-1)


def decode_boxes(deltas, reference, weights=(1.0, 1.0, 1.0, 1.0), clip: float = BBOX_XFORM_CLIP):
  """Boxes (x1, y1, x2, y2) [..., 4] from `deltas` relative to `reference`; inverse of
  `encode_boxes` (dw, dh / weights clamped at `clip` from above, as torchvision)."""
  wx, wy, ww, wh = _weights(weights)
  deltas = _check(deltas, "deltas")
  rx, ry, rw, rh = _centres(_check(reference, "reference"))
  dx, dy, dw, dh = jnp.moveaxis(deltas, -1, 0)
  dw = jnp.minimum(dw / ww, clip)
  dh = jnp.minimum(dh / wh, clip)
  cx, cy = dx / wx * rw + rx, dy / wy * rh + ry
  w, h = jnp.exp(dw) * rw, jnp.exp(dh) * rh
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)
