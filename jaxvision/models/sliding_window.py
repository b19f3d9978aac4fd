"""Detection as classification: a crop classifier slid over every window, two ways.

The window set. For each window side `w` (image pixels) the image is viewed at the size where a
window measures the classifier's input side `n`: factor f = w / n image pixels per resized
pixel, resized size (floor(H / f), floor(W / f)). Windows start at multiples of `stride`
resized pixels (`stride` * f image pixels: the same fraction of the window at every scale) and
lie inside the image: window (r, c) is the box (x1, y1, x2, y2) = (c * stride * f,
r * stride * f, c * stride * f + w, r * stride * f + w), for every r, c with
r * stride + n <= floor(H / f) (columns alike). Order: scale by scale, rows then columns.

Two ways to score them, equal on every window (to float rounding):
(a) `crop_logits`: each window is cropped and warped to n x n (RoIAlign, aligned, a fixed
    number of bilinear samples per output pixel) and classified on its own;
(b) `fcn_logits`: per scale, the whole image is warped once to the resized size with the same
    samples and the classifier, made fully convolutional (`fully_convolutional`), runs once:
    its score map's cells are the windows at the network's total stride S. Strides that divide
    S run it on the S / stride shifted copies per axis ("shift and stitch"); multiples of S
    keep every (stride / S)-th cell.
Equality needs a classifier with no padding (`window_cnn`); see `jaxvision.models.window_cnn`.

Windows larger than the image (w > min(H, W)) are an error, not skipped.
Detections: each window's softmax over (background, classes...) gives a score per object class;
per-class NMS (`batched_nms`) merges them. Label 0 is background, label c + 1 object class c.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.models.fully_convolutional import fully_convolutional
from jaxvision.nn.checks import check_positive_int
from jaxvision.ops.crop import crop_and_resize
from jaxvision.ops.nms import batched_nms
from jaxvision.ops.roi import roi_align


@dataclasses.dataclass(frozen=True)
class Scale:
  """The windows of one side: `window` image pixels, `input_size` on the resized image.

  Attributes:
    window: window side in image pixels.
    input_size: the classifier's input side n.
    resized: (H', W') of the image resized so that a window measures n pixels.
    stride: distance of neighbouring windows in resized pixels.
  """
  window: float
  input_size: int
  resized: tuple[int, int]
  stride: int

  @property
  def factor(self) -> float:
    """Image pixels per resized pixel, w / n."""
    return self.window / self.input_size

  @property
  def grid(self) -> tuple[int, int]:
    """(rows, columns) of windows."""
    return tuple((side - self.input_size) // self.stride + 1 for side in self.resized)

  @property
  def sampling_ratio(self) -> int:
    """Bilinear samples per output pixel along each axis: ceil(w / n) (averaged: shrinking
    images does not alias)."""
    return max(1, math.ceil(self.factor - 1e-6))

  def boxes(self) -> np.ndarray:
    """(x1, y1, x2, y2) image-pixel boxes [rows * cols, 4], rows then columns."""
    rows, cols = self.grid
    y = np.arange(rows) * self.stride * self.factor
    x = np.arange(cols) * self.stride * self.factor
    y, x = (a.ravel() for a in np.meshgrid(y, x, indexing="ij"))
    return np.stack([x, y, x + self.window, y + self.window], -1).astype(np.float32)


def window_scales(image_size: Sequence[int], window_sizes: Sequence[float], input_size: int,
                  stride: int) -> tuple[Scale, ...]:
  """The window set (see the module doc) of an image (H, W), one `Scale` per window side.

  Raises:
    ValueError: on a non-positive size or stride, or a window larger than the image.
  """
  if (len(image_size) != 2 or
      not all(isinstance(s, numbers.Integral) and s >= 1 for s in image_size)):
    raise ValueError(f"image_size: expected (H, W) positive ints, got {tuple(image_size)!r}")
  n = check_positive_int(input_size, "input_size")
  stride = check_positive_int(stride, "stride")
  sizes = tuple(window_sizes) if isinstance(window_sizes, (tuple, list)) else ()
  if not sizes or not all(isinstance(w, numbers.Real) and w > 0 for w in sizes):
    raise ValueError(f"window_sizes: expected a non-empty list of positive window sides (image "
                     f"pixels), got {window_sizes!r}")
  height, width = image_size
  out = []
  for w in sizes:
    if w > min(height, width):
      raise ValueError(f"window_sizes: a window of side {w} is larger than the {height}x{width} "
                       f"image; expected sides <= {min(height, width)}")
    f = w / n
    # Windows fit: r * stride + n <= H / f; the 1e-9 absorbs rounding of H / f at w == H.
    resized = tuple(max(n, math.floor(side / f + 1e-9)) for side in (height, width))
    out.append(Scale(window=float(w), input_size=n, resized=resized, stride=stride))
  return tuple(out)


def window_boxes(scales: Sequence[Scale]) -> np.ndarray:
  """All windows' (x1, y1, x2, y2) boxes [K, 4] in the order of the logits."""
  return np.concatenate([s.boxes() for s in scales])


def _check_image(image):
  image = jnp.asarray(image)
  if image.ndim != 3 or not jnp.issubdtype(image.dtype, jnp.floating):
    raise ValueError(f"image: expected one float image [H, W, C], got shape {tuple(image.shape)} "
                     f"and dtype {image.dtype}")
  return image


def crop_logits(classify: Callable, image, scales: Sequence[Scale],
                chunk_size: int | None = None):
  """Way (a): every window cropped, warped to n x n and classified on its own.

  Args:
    classify: crops [K, n, n, C] -> logits [K, classes] (the classifier, e.g. `model.apply`
      with its variables bound).
    image: [H, W, C] float.
    scales: from `window_scales` for this image's size.
    chunk_size: classify this many crops at a time (a `lax.map`); None: all at once.

  Returns:
    logits [K, classes] in `window_boxes(scales)` order.
  """
  image = _check_image(image)
  out = []
  for s in scales:
    crops = crop_and_resize(image[None], jnp.asarray(s.boxes())[None], s.input_size,
                            s.sampling_ratio)[0]
    if chunk_size is None:
      out.append(classify(crops))
    else:
      out.append(jax.lax.map(lambda c: classify(c[None])[0], crops,
                             batch_size=check_positive_int(chunk_size, "chunk_size")))
  return jnp.concatenate(out)


def resize_for_scale(image, scale: Scale):
  """The image warped to `scale.resized` with the crops' bilinear samples: [H', W', C]."""
  h, w = scale.resized
  whole = jnp.array([[[0.0, 0.0, w * scale.factor, h * scale.factor]]], jnp.float32)
  return roi_align(image[None], whole, (h, w), sampling_ratio=scale.sampling_ratio,
                   aligned=True)[0, 0]


def fcn_logits(score_map: Callable, image, scales: Sequence[Scale], net_stride: int):
  """Way (b): per scale, one fully convolutional pass over the resized image.

  Args:
    score_map: images [1, h, w, C] -> score maps [1, h', w', classes] (the classifier made
      fully convolutional, its head a window on the n x n input's last feature map).
    image: [H, W, C] float.
    scales: from `window_scales`; each stride must divide `net_stride` or be a multiple of it.
    net_stride: the network's total stride S (`network_stride`).

  Returns:
    logits [K, classes] in `window_boxes(scales)` order.
  """
  image = _check_image(image)
  for s in scales:
    if s.stride % net_stride and net_stride % s.stride:
      raise ValueError(f"stride: expected a divisor or a multiple of the network's stride "
                       f"{net_stride}, got {s.stride}")
  out = []
  for s in scales:
    rows, cols = s.grid
    resized = resize_for_scale(image, s)
    if s.stride % net_stride == 0:
      q = s.stride // net_stride
      grid = score_map(resized[None])[0][::q, ::q][:rows, :cols]
    else:
      m = net_stride // s.stride
      grid = None
      for oy in range(min(m, rows)):
        for ox in range(min(m, cols)):
          part = score_map(resized[None, oy * s.stride:, ox * s.stride:])[0]
          n_rows, n_cols = len(range(oy, rows, m)), len(range(ox, cols, m))
          part = part[:n_rows, :n_cols]
          if grid is None:
            grid = jnp.zeros((rows, cols, part.shape[-1]), part.dtype)
          grid = grid.at[oy::m, ox::m].set(part)
    out.append(grid.reshape(rows * cols, -1))
  return jnp.concatenate(out)


def network_stride(score_map: Callable, input_size: int, channels: int = 3) -> int:
  """The total stride S of a fully convolutional classifier: the smallest growth of the input
  side that adds a second cell to its score map (shapes only, nothing is computed)."""
  def cells(side):
    x = jax.ShapeDtypeStruct((1, side, input_size, channels), jnp.float32)
    return jax.eval_shape(score_map, x).shape[1]
  if cells(input_size) != 1:
    raise ValueError(f"input_size: expected the score map of an {input_size}x{input_size} input "
                     f"to be one cell, got {cells(input_size)}")
  for d in range(1, 4 * input_size + 1):
    if cells(input_size + d) > 1:
      return d
  raise ValueError(f"score_map: no second cell within {4 * input_size} extra pixels")


@functools.partial(jax.jit, static_argnames=("iou_threshold", "score_threshold",
                                             "max_detections", "pre_nms_top_k"))
def detections(logits, boxes, *, iou_threshold: float = 0.3, score_threshold: float = 0.05,
               max_detections: int = 100, pre_nms_top_k: int = 1000):
  """Per-class NMS of window scores.

  Args:
    logits: [K, 1 + classes] (class 0 background).
    boxes: [K, 4] the windows (x1, y1, x2, y2).
    iou_threshold: NMS suppresses a box overlapping a kept one of its class by more.
    score_threshold: (window, class) pairs scoring at most this are dropped.
    max_detections: D, detections kept.
    pre_nms_top_k: only the best-scoring (window, class) pairs enter NMS (a sequential loop).

  Returns:
    (boxes [D, 4], scores [D], classes [D] in 0..classes-1, valid bool [D]), D = max_detections,
    by decreasing score; rows with valid False are padding.
  """
  logits, boxes = jnp.asarray(logits), jnp.asarray(boxes, jnp.float32)
  if logits.ndim != 2 or logits.shape[1] < 2 or boxes.shape != (logits.shape[0], 4):
    raise ValueError(f"logits, boxes: expected [K, 1 + classes] and [K, 4], got shapes "
                     f"{tuple(logits.shape)} and {tuple(boxes.shape)}")
  probs = jax.nn.softmax(logits.astype(jnp.float32), -1)[:, 1:]
  k, c = probs.shape
  scores, top = jax.lax.top_k(probs.reshape(-1), min(k * c, check_positive_int(pre_nms_top_k,
                                                                          "pre_nms_top_k")))
  cand, classes = boxes[top // c], top % c
  keep, valid = batched_nms(cand, scores, classes, iou_threshold, max_detections, score_threshold)
  return cand[keep], jnp.where(valid, scores[keep], 0.0), classes[keep], valid


class SlidingWindowDetector:
  """A trained crop classifier as a sliding-window detector, both ways (see the module doc).

  The two ways agree only for an unpadded classifier (`window_cnn`); a zero-padded one (ResNet)
  runs too, but its fully convolutional scores then differ from the crops' near window borders.

  Args:
    model: a classifier with a pooled Dense head `fc` and `features=True` (`window_cnn`).
    variables: its variables.
    input_size: n, the side of its training crops.
    channels: image channels.
  """

  def __init__(self, model: nn.Module, variables: dict, input_size: int, channels: int = 3):
    self.input_size = check_positive_int(input_size, "input_size")
    self.fcn, self.fcn_variables = fully_convolutional(model, variables,
                                                       (self.input_size, self.input_size, channels))
    self.classify = functools.partial(model.apply, variables, train=False)
    self.score_map = functools.partial(self.fcn.apply, self.fcn_variables, train=False)
    self.net_stride = network_stride(self.score_map, self.input_size, channels)

  def scales(self, image_size, window_sizes, stride: int | None = None) -> tuple[Scale, ...]:
    """`window_scales` at this classifier's input size (stride default: the network's)."""
    return window_scales(image_size, window_sizes, self.input_size,
                         self.net_stride if stride is None else stride)

  def logits(self, image, scales: Sequence[Scale], way: str = "fcn"):
    """[K, classes] logits of every window: way "crop" (a) or "fcn" (b)."""
    if way == "crop":
      return crop_logits(self.classify, image, scales)
    if way == "fcn":
      return fcn_logits(self.score_map, image, scales, self.net_stride)
    raise ValueError(f"way: expected 'crop' or 'fcn', got {way!r}")

  @functools.cached_property
  def _jitted(self):
    @functools.partial(jax.jit, static_argnames=("scales", "way", "iou_threshold",
                                                 "score_threshold", "max_detections"))
    def run(image, scales, way, iou_threshold, score_threshold, max_detections):
      boxes = jnp.asarray(window_boxes(scales))
      return detections(self.logits(image, scales, way), boxes, iou_threshold=iou_threshold,
                        score_threshold=score_threshold, max_detections=max_detections)
    return run

  def detect(self, image, window_sizes, stride: int | None = None, *, way: str = "fcn",
             iou_threshold: float = 0.3, score_threshold: float = 0.05, max_detections: int = 100):
    """Detections of one image [H, W, C] (see `detections`), jit-compiled per image size."""
    image = _check_image(image)
    scales = self.scales(image.shape[:2], window_sizes, stride)
    if way not in ("crop", "fcn"):
      raise ValueError(f"way: expected 'crop' or 'fcn', got {way!r}")
    return self._jitted(image, scales, way, float(iou_threshold), float(score_threshold),
                        check_positive_int(max_detections, "max_detections"))
