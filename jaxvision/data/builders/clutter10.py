"""TFDS builder `clutter10`: procedural 32x32x3 images of ten stroke figures in clutter, offline.

A CPU stand-in for CIFAR-10-sized experiments (the shape, dtype and class count of CIFAR-10, with
no download), hard enough that depth matters; it makes no claim about CIFAR-10 itself. Each image
holds one figure of its class (the label) drawn at a random position, scale, rotation, stroke
width and colour, over a textured background strewn with distractor parts (strokes, dots, arcs:
the pieces the figures are made of), with some figures partly occluded and pixel noise on top.
No figure differs from another in a colour or a global statistic; what separates them is how
their parts are arranged (three strokes closed into a triangle vs three dots on its corners vs
two strokes meeting in a chevron, ...). Every class is closed under mirroring (its figure is
symmetric and its rotation uniform), so left-right flips keep labels valid.

Every example is a pure function of (config seed, split, index) through a numpy `Generator`
seeded with them; the label is `index % 10`, so every split is balanced.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from jaxvision.data.builders.procedural import ProceduralSplits

CLASSES = ("ring", "plus", "triangle", "square", "bars", "tee", "bullseye", "chevron", "dots",
           "grating")
_SPLIT_CODES = {"train": 0, "test": 1}
SIZE = 32

_DESCRIPTION = """\
Procedural 32x32 RGB images in ten classes (ring, plus, triangle, square, bars, tee, bullseye,
chevron, dots, grating): one stroke figure per image at random position, scale, rotation, width
and colour, on a textured background with distractor strokes, dots and arcs, occluders and
noise. A CPU stand-in for CIFAR-10-sized experiments, not a claim about CIFAR-10. Generated
offline from a seed; labels are balanced (index % 10).
"""


@dataclasses.dataclass(eq=False)
class Clutter10Config(tfds.core.BuilderConfig):
  """Size and difficulty of a `clutter10` variant.

  Attributes:
    num_train: training examples.
    num_test: test examples.
    min_radius, max_radius: the figure's radius in pixels (its parts lie within ~1 radius of
      its centre).
    min_distractors, max_distractors: distractor parts per image (radius 2 to 5 pixels).
    occlusion: probability that an occluding blob is drawn over the figure.
    noise: largest standard deviation of the pixel noise (uniform in [noise / 4, noise]).
    seed: seed of the whole dataset.
  """
  num_train: int = 20_000
  num_test: int = 2_000
  min_radius: float = 8.0
  max_radius: float = 13.0
  min_distractors: int = 0
  max_distractors: int = 3
  occlusion: float = 0.15
  noise: float = 8.0
  seed: int = 0


# ---------------------------------------------------------------------------------------------
# Signed distances (negative inside) of the figures' parts, in the figure's own units.


def _segment(px, py, a, b, width):
  ax, ay = a
  bx, by = b
  dx, dy = bx - ax, by - ay
  t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
  return np.hypot(px - ax - t * dx, py - ay - t * dy) - width


def _disk(px, py, centre, radius):
  return np.hypot(px - centre[0], py - centre[1]) - radius


def _polygon(px, py, corners, width):
  return np.minimum.reduce([_segment(px, py, a, b, width)
                            for a, b in zip(corners, corners[1:] + corners[:1])])


def _corners(n, radius, phase=0.0):
  return [(radius * np.cos(phase + 2 * np.pi * k / n), radius * np.sin(phase + 2 * np.pi * k / n))
          for k in range(n)]


def _figure(label: int, px, py, w, rng):
  """Signed distance of figure `label` (radius ~1, stroke half-width `w`) at points (px, py)."""
  if label == 0:  # ring
    return np.abs(np.hypot(px, py) - 0.8) - w
  if label == 1:  # plus
    return np.minimum(_segment(px, py, (-1, 0), (1, 0), w), _segment(px, py, (0, -1), (0, 1), w))
  if label == 2:  # triangle outline
    return _polygon(px, py, _corners(3, 1.0), w)
  if label == 3:  # square outline
    return _polygon(px, py, _corners(4, 1.0, np.pi / 4), w)
  if label == 4:  # bars: two parallel strokes
    return np.minimum(_segment(px, py, (-0.9, -0.4), (0.9, -0.4), w),
                      _segment(px, py, (-0.9, 0.4), (0.9, 0.4), w))
  if label == 5:  # tee
    return np.minimum(_segment(px, py, (-0.9, -0.8), (0.9, -0.8), w),
                      _segment(px, py, (0, -0.8), (0, 1.0), w))
  if label == 6:  # bullseye: a dot inside a ring
    return np.minimum(_disk(px, py, (0, 0), 0.3), np.abs(np.hypot(px, py) - 0.85) - w)
  if label == 7:  # chevron: two strokes meeting at a point
    return np.minimum(_segment(px, py, (-0.9, -0.7), (0, 0.8), w),
                      _segment(px, py, (0, 0.8), (0.9, -0.7), w))
  if label == 8:  # dots on the corners of a triangle
    return np.minimum.reduce([_disk(px, py, c, 0.28) for c in _corners(3, 0.85)])
  # grating: a disk of parallel stripes, 2 to 3 periods across
  period = 2.0 / rng.uniform(2.0, 3.0)
  stripes = (np.abs(np.mod(px / period, 1.0) - 0.5) - 0.25) * period
  return np.maximum(_disk(px, py, (0, 0), 1.0), stripes)


def _distractor(px, py, w, rng):
  """Signed distance of one distractor part (radius ~1): a stroke, a dot or an arc."""
  kind = rng.integers(3)
  if kind == 0:
    return _segment(px, py, (-1, 0), (1, 0), w)
  if kind == 1:
    return _disk(px, py, (0, 0), rng.uniform(0.2, 0.4))
  extent = rng.uniform(0.3, 0.6) * np.pi  # an arc of a circle of radius 0.8
  angle = np.arctan2(py, px)
  ring = np.abs(np.hypot(px, py) - 0.8) - w
  return np.where(np.abs(angle) <= extent, ring, np.inf)


# ---------------------------------------------------------------------------------------------
# Drawing.


_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5  # pixel centres


def _local(rng, radius):
  """Pixel grid in the units of a figure of `radius` pixels at a random place and rotation."""
  x, y = _X, _Y
  margin = 0.6 * radius
  cx, cy = rng.uniform(margin, SIZE - margin, 2)
  angle = rng.uniform(0, 2 * np.pi)
  c, s = np.cos(angle), np.sin(angle)
  dx, dy = (x - cx) / radius, (y - cy) / radius
  return c * dx + s * dy, -s * dx + c * dy


def _paint(image, distance_px, colour):
  """Draws `colour` where the signed distance (in pixels) is negative, anti-aliased."""
  alpha = np.clip(0.5 - distance_px, 0.0, 1.0)[..., None]
  image *= 1 - alpha
  image += alpha * colour


def _texture(rng):
  """A float [32, 32] texture in [0, 1]: stripes, a checkerboard or smooth noise."""
  x, y = _X, _Y
  kind = rng.integers(3)
  if kind == 0:  # stripes
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 12)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period
                              + rng.uniform(0, 2 * np.pi))
  if kind == 1:  # checkerboard
    cell = rng.uniform(2, 8)
    return ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float64)
  n = int(rng.integers(3, 9))  # smooth noise: a coarse random grid, bilinearly upsampled
  grid = rng.uniform(size=(n, n))
  pos = (np.arange(SIZE) + 0.5) * (n - 1) / SIZE
  i0 = np.minimum(np.floor(pos).astype(int), n - 2)
  f = pos - i0
  rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
  return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _background(rng):
  """Two textures between random colours: a float [32, 32, 3] image in [0, 255]."""
  a, b, c = rng.uniform(0, 255, (3, 3))
  t, u = _texture(rng), _texture(rng)
  amount = rng.uniform(0.1, 0.5, 2)
  return a + (b - a) * (amount[0] * t)[..., None] + (c - a) * (amount[1] * u)[..., None] * 0.5


def _colour_against(rng, image, min_distance):
  mean = image.reshape(-1, 3).mean(0)
  for _ in range(50):
    colour = rng.uniform(0, 255, 3)
    if np.linalg.norm(colour - mean) >= min_distance:
      break
  return colour


def render(config: Clutter10Config, split: str, index: int) -> tuple[np.ndarray, int]:
  """Example `index` of `split`: (image uint8 [32, 32, 3], label in 0..9)."""
  rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], index])
  label = index % len(CLASSES)
  image = _background(rng)
  width_px = rng.uniform(0.6, 1.4)  # stroke half-width, shared by figure and distractors
  distractors = int(rng.integers(config.min_distractors, config.max_distractors + 1))
  above = int(rng.integers(0, min(2, distractors) + 1))  # distractors drawn over the figure
  for _ in range(distractors - above):
    radius = rng.uniform(2.0, 5.0)
    px, py = _local(rng, radius)
    _paint(image, _distractor(px, py, width_px / radius, rng) * radius,
           _colour_against(rng, image, 50))
  radius = rng.uniform(config.min_radius, config.max_radius)
  px, py = _local(rng, radius)
  _paint(image, _figure(label, px, py, width_px / radius, rng) * radius,
         _colour_against(rng, image, 110))
  for _ in range(above):
    radius = rng.uniform(2.0, 5.0)
    px, py = _local(rng, radius)
    _paint(image, _distractor(px, py, width_px / radius, rng) * radius,
           _colour_against(rng, image, 50))
  if rng.uniform() < config.occlusion:  # a blob of background-like colour over part of the figure
    r = rng.uniform(3, 6)
    px, py = _local(rng, r)
    _paint(image, _disk(px, py, (0, 0), 1.0) * r, image.reshape(-1, 3).mean(0)
           + rng.normal(0, 20, 3))
  image += rng.normal(0, rng.uniform(config.noise / 4, config.noise), image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8), label


class Clutter10(ProceduralSplits, tfds.core.GeneratorBasedBuilder):
  """Ten stroke figures in clutter, 32x32x3, balanced; procedural, needs no download."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Easier: radius 8-13 (was 7-13), 0-3 distractors (2-5), occlusion "
                            "0.15 (0.25), noise 8 (12), so ResNet-20 learns in CPU-minutes."}
  BUILDER_CONFIGS = [
      Clutter10Config(name="default", description="20,000 train / 2,000 test images."),
      Clutter10Config(name="tiny", description="40 train / 20 test images, for tests.",
                      num_train=40, num_test=20),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(SIZE, SIZE, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=CLASSES),
        }),
        supervised_keys=("image", "label"),
    )

  def _example(self, split: str, index: int) -> dict:
    image, label = render(self.builder_config, split, index)
    return {"image": image, "label": label}
