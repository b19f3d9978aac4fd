"""Selective Search region proposals (Uijlings et al. 2013): learning-free, numpy on the host.

The paper's "fast" mode, with the paper's measures:
- strategies: each colour space of `COLOUR_SPACES` (HSV, Lab) x each Felzenszwalb-Huttenlocher
  scale k of `scales` (scikit-image's `felzenszwalb`, sigma 0.8, on the image in that colour
  space scaled to [0, 1]) x two similarity sets, colour + texture + size + fill and texture +
  size + fill;
- hierarchical grouping: start from the over-segmentation's regions (4-connected
  neighbours), repeatedly merge the most similar adjacent pair (ties: the lowest indices);
  every region and every merge adds its bounding box;
- similarities, each in [0, 1]: colour, the intersection of L1-normalised 25-bin histograms of
  each channel; texture, the intersection of L1-normalised 10-bin histograms of the rectified
  Gaussian derivatives (sigma 1) in 8 orientations of each channel; size, 1 - (size_i + size_j)
  / image area (small regions merge first); fill, 1 - (box_ij - size_i - size_j) / image area.
  A merged region's histograms are the size-weighted means of its parts';
- ranking: in each strategy the last merge (the whole image) has position 1, the one before 2,
  ..., the initial regions the largest positions; a box's rank value is its position times a
  uniform random number (`seed`), lowest first, over all strategies together; exact duplicate
  boxes keep their best rank.

Boxes are pixel (x1, y1, x2, y2) with edges at pixel boundaries (torchvision's convention): a
region of columns 3..7 and rows 0..1 is (3, 0, 8, 2). They lie inside [0, W] x [0, H].
"""

from __future__ import annotations

import functools
import multiprocessing
import numbers
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage import color, segmentation
from tqdm.auto import tqdm

VERSION = 1  # bump when the proposals for the same arguments change (it keys caches)
COLOUR_SPACES = ("hsv", "lab")
_USE_COLOUR = (True, False)  # the similarity sets: colour + texture + size + fill, texture + ...
DEFAULT_SCALES = (50, 100)
DEFAULT_MIN_SIZE = 20
_SIGMA = 0.8  # Felzenszwalb pre-smoothing, as in the paper's code
_COLOUR_BINS = 25
_TEXTURE_BINS = 10
_ORIENTATIONS = 8


def _check_image(image) -> np.ndarray:
  """float64 [H, W, 3] in [0, 1] from uint8 or float [H, W, 3]."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
    raise ValueError(f"image: expected a non-empty RGB image [H, W, 3], got shape {image.shape}")
  if image.dtype == np.uint8:
    return image.astype(np.float64) / 255.0
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError(f"image: expected dtype uint8 (0..255) or float (0..1), got {image.dtype}")
  lo, hi = float(np.min(image)), float(np.max(image))
  if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
    raise ValueError(f"image: a float image must hold finite values in [0, 1], got values in "
                     f"[{lo}, {hi}]")
  return image.astype(np.float64)


def check_max_boxes(max_boxes) -> int:
  """`max_boxes` as an int, or a ValueError unless it is an int >= 1."""
  if isinstance(max_boxes, bool) or not isinstance(max_boxes, numbers.Integral) or max_boxes < 1:
    raise ValueError(f"max_boxes: expected an int >= 1, got {max_boxes!r}")
  return int(max_boxes)


def _check_options(scales, min_size) -> tuple[tuple[float, ...], int]:
  scales = tuple(scales) if isinstance(scales, Sequence) else (scales,)
  if not scales or not all(isinstance(k, numbers.Real) and not isinstance(k, bool) and k > 0
                           for k in scales):
    raise ValueError(f"scales: expected a non-empty sequence of numbers > 0, got {scales!r}")
  if isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral) or min_size < 0:
    raise ValueError(f"min_size: expected an int >= 0, got {min_size!r}")
  return tuple(float(k) for k in scales), int(min_size)


def _colour_space(rgb: np.ndarray, space: str) -> np.ndarray:
  """The image in `space`, each channel scaled to [0, 1]."""
  if space == "hsv":
    return color.rgb2hsv(rgb)
  lab = color.rgb2lab(rgb)  # L in [0, 100], a and b within [-128, 127]
  return np.clip((lab + [0.0, 128.0, 128.0]) / [100.0, 255.0, 255.0], 0.0, 1.0)


def _colour_bins(image: np.ndarray) -> np.ndarray:
  """[P, 3] histogram cell of each pixel: channel * 25 + bin."""
  bins = np.minimum((image * _COLOUR_BINS).astype(np.int64), _COLOUR_BINS - 1)
  return bins.reshape(-1, 3) + np.arange(3) * _COLOUR_BINS


def _texture_bins(image: np.ndarray) -> np.ndarray:
  """[P, 24] histogram cell of each pixel: (channel * 8 + orientation) * 10 + bin."""
  angles = np.arange(_ORIENTATIONS) * (2 * np.pi / _ORIENTATIONS)
  cells = []
  for c in range(3):
    gy = ndimage.gaussian_filter(image[..., c], 1.0, order=(1, 0))
    gx = ndimage.gaussian_filter(image[..., c], 1.0, order=(0, 1))
    response = np.maximum(gx[..., None] * np.cos(angles) + gy[..., None] * np.sin(angles), 0.0)
    top = response.max()
    scaled = response / top if top > 0 else response
    bins = np.minimum((scaled * _TEXTURE_BINS).astype(np.int64), _TEXTURE_BINS - 1)
    cells.append(bins.reshape(-1, _ORIENTATIONS) + (c * _ORIENTATIONS + np.arange(_ORIENTATIONS))
                 * _TEXTURE_BINS)
  return np.concatenate(cells, axis=1)


def _histograms(labels: np.ndarray, n: int, cells: np.ndarray, width: int) -> np.ndarray:
  """[n, width] L1-normalised histograms of each region over the pixels' cells [P, C]."""
  flat = (labels[:, None] * width + cells).ravel()
  counts = np.bincount(flat, minlength=n * width).reshape(n, width).astype(np.float64)
  return counts / counts.sum(axis=1, keepdims=True)


class _Regions:
  """The initial regions of one over-segmentation: sizes, boxes, histograms, neighbours."""

  def __init__(self, labels: np.ndarray, colour_cells: np.ndarray, texture_cells: np.ndarray):
    self.n = int(labels.max()) + 1
    flat = labels.ravel()
    self.size = np.bincount(flat, minlength=self.n).astype(np.float64)
    self.boxes = np.array([[sx.start, sy.start, sx.stop, sy.stop]
                           for sy, sx in ndimage.find_objects(labels + 1)], np.float64)
    self.colour = _histograms(flat, self.n, colour_cells, 3 * _COLOUR_BINS)
    self.texture = _histograms(flat, self.n, texture_cells, 3 * _ORIENTATIONS * _TEXTURE_BINS)
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    edge = a != b
    lo, hi = np.minimum(a[edge], b[edge]), np.maximum(a[edge], b[edge])
    pairs = np.unique(lo * self.n + hi)
    self.pairs = np.stack([pairs // self.n, pairs % self.n], axis=1)


def _group(r: _Regions, image_area: float, use_colour: bool) -> np.ndarray:
  """Hierarchical grouping: the boxes [2n - 1, 4] of the regions in creation order."""
  n = r.n
  size, boxes = r.size.copy(), r.boxes.copy()
  colour, texture = r.colour.copy(), r.texture.copy()

  def similarity(i, j):
    hull = (np.maximum(boxes[i, 2], boxes[j, 2]) - np.minimum(boxes[i, 0], boxes[j, 0])) * (
        np.maximum(boxes[i, 3], boxes[j, 3]) - np.minimum(boxes[i, 1], boxes[j, 1]))
    merged = size[i] + size[j]
    s = ((1.0 - merged / image_area) + (1.0 - (hull - merged) / image_area)  # size, fill
         + np.minimum(texture[i], texture[j]).sum(-1))
    return s + np.minimum(colour[i], colour[j]).sum(-1) if use_colour else s

  sim = np.full((n, n), -np.inf)
  i, j = r.pairs[:, 0], r.pairs[:, 1]
  sim[i, j] = sim[j, i] = similarity(i, j)
  created = [boxes.copy()]
  for _ in range(n - 1):
    a, b = divmod(int(np.argmax(sim)), n)
    if sim[a, b] == -np.inf:  # no adjacent pair left (cannot happen on a 4-connected grid)
      break
    sa, sb = size[a], size[b]
    colour[a] = (sa * colour[a] + sb * colour[b]) / (sa + sb)
    texture[a] = (sa * texture[a] + sb * texture[b]) / (sa + sb)
    size[a] = sa + sb
    boxes[a, :2] = np.minimum(boxes[a, :2], boxes[b, :2])
    boxes[a, 2:] = np.maximum(boxes[a, 2:], boxes[b, 2:])
    neighbours = np.isfinite(sim[a]) | np.isfinite(sim[b])
    neighbours[[a, b]] = False
    sim[[a, b], :] = -np.inf
    sim[:, [a, b]] = -np.inf
    idx = np.flatnonzero(neighbours)
    if idx.size:
      sim[a, idx] = sim[idx, a] = similarity(a, idx)
    created.append(boxes[a][None].copy())  # slot a changes in later merges
  return np.concatenate(created)


def selective_search(image, *, max_boxes: int = 2000, scales: Sequence[float] = DEFAULT_SCALES,
                     min_size: int = DEFAULT_MIN_SIZE, seed: int = 0) -> np.ndarray:
  """Selective Search boxes of one image, best-ranked first (see the module doc).

  Args:
    image: uint8 [H, W, 3] (0..255) or float [H, W, 3] (0..1), RGB.
    max_boxes: most boxes returned.
    scales: the Felzenszwalb-Huttenlocher k of the over-segmentations (the paper's fast mode:
      50 and 100).
    min_size: smallest region of the over-segmentations, in pixels.
    seed: seed of the random ranking; the same arguments give the same boxes.

  Returns:
    float32 [K, 4] pixel (x1, y1, x2, y2), distinct, ranked, K <= max_boxes.
  """
  rgb = _check_image(image)
  max_boxes = check_max_boxes(max_boxes)
  scales, min_size = _check_options(scales, min_size)
  height, width = rgb.shape[:2]
  rng = np.random.default_rng(seed)
  all_boxes, all_ranks = [], []
  for space in COLOUR_SPACES:
    converted = _colour_space(rgb, space)
    colour_cells, texture_cells = _colour_bins(converted), _texture_bins(converted)
    for k in scales:
      labels = segmentation.felzenszwalb(converted, scale=k, sigma=_SIGMA, min_size=min_size)
      present = np.bincount(labels.ravel()) > 0  # labels 0..n-1 (felzenszwalb's already are)
      labels = (np.cumsum(present) - 1)[labels]
      regions = _Regions(labels, colour_cells, texture_cells)
      for use_colour in _USE_COLOUR:
        boxes = _group(regions, float(height * width), use_colour)
        positions = np.arange(len(boxes), 0, -1)
        all_boxes.append(boxes)
        all_ranks.append(positions * rng.random(len(boxes)))
  order = np.argsort(np.concatenate(all_ranks), kind="stable")
  boxes = np.concatenate(all_boxes)[order]
  x1, y1, x2, y2 = boxes.astype(np.int64).T  # integer pixel edges: one int64 key per box
  keys = ((x1 * (height + 1) + y1) * (width + 1) + x2) * (height + 1) + y2
  first = np.unique(keys, return_index=True)[1]
  return boxes[np.sort(first)[:max_boxes]].astype(np.float32)


def proposals_for_images(images, *, max_boxes: int, seed: int = 0,
                         processes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """`selective_search(image, max_boxes=max_boxes, seed=seed)` of each image, padded.

  Each image's boxes depend only on the image and the seed, not on its position.

  Args:
    images: [N, H, W, 3] array or a sequence of [H, W, 3] images (sizes may differ).
    max_boxes: K, boxes kept per image.
    seed: seed of the ranking.
    processes: worker processes (spawned); None or 1 runs in this process.

  Returns:
    (boxes float32 [N, K, 4] zero-padded, valid bool [N, K]).
  """
  max_boxes = check_max_boxes(max_boxes)
  if processes is not None and (isinstance(processes, bool)
                                or not isinstance(processes, numbers.Integral) or processes < 1):
    raise ValueError(f"processes: expected None or an int >= 1, got {processes!r}")
  n = len(images)
  boxes = np.zeros((n, max_boxes, 4), np.float32)
  valid = np.zeros((n, max_boxes), bool)
  run = functools.partial(selective_search, max_boxes=max_boxes, seed=seed)
  bar = tqdm(total=n, desc="selective search", unit="img")
  pool = (multiprocessing.get_context("spawn").Pool(processes)
          if processes is not None and processes > 1 else None)
  try:
    results = pool.imap(run, images, chunksize=8) if pool else map(run, images)
    for i, found in enumerate(results):
      boxes[i, :len(found)] = found
      valid[i, :len(found)] = True
      bar.update()
  finally:
    bar.close()
    if pool:
      pool.terminate()
  return boxes, valid
