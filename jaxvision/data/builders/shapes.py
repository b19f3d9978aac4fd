"""TFDS builder `shapes`: procedural images of circles, squares and triangles, prepared offline.

Each example is an RGB image with 1..N filled shapes (random class, size, colour and position;
neither shapes nor their boxes overlap) on a textured background (stripes, a checkerboard or smooth noise, plus pixel
noise), with:
- `mask`: per-pixel class, 0 background, 1 circle, 2 square, 3 triangle (`label + 1`);
- `instances` (1.1.0): per-pixel object index, 0 background, i + 1 the pixels of object i (the
  shapes never overlap, so this map holds every per-object mask: `instances == i + 1`);
- `objects`: one `bbox` (ymin, xmin, ymax, xmax, normalised; the tight box of the shape's
  pixels, edges at pixel boundaries) and `label` (0 circle, 1 square, 2 triangle) per shape.

Every example is a pure function of (config seed, split, index): builds are reproducible.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from jaxvision.data.builders.procedural import ProceduralSplits

CLASSES = ("circle", "square", "triangle")
_SPLIT_CODES = {"train": 0, "test": 1}

_DESCRIPTION = """\
Procedural segmentation/detection data: filled circles, squares and triangles of random size,
colour and position on textured backgrounds, with per-pixel class masks (0 = background,
1..3 = circle, square, triangle) and instance boxes and classes. Generated offline from a seed.
"""


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
  """Size and content of a `shapes` variant.

  Attributes:
    image_size: side of the square images.
    num_train: training examples.
    num_test: test examples.
    min_shapes: fewest shapes per image.
    max_shapes: most shapes per image (fewer when they do not fit without overlap).
    min_extent: smallest shape (circle diameter, square or triangle side) as a fraction of
      `image_size`.
    max_extent: largest shape as a fraction of `image_size`.
    seed: seed of the whole dataset.
  """
  image_size: int = 128
  num_train: int = 5000
  num_test: int = 500
  min_shapes: int = 1
  max_shapes: int = 4
  min_extent: float = 0.15
  max_extent: float = 0.4
  seed: int = 0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """A float [size, size, 3] texture in [0, 255]: stripes, checkerboard or smooth noise."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  kind = rng.integers(3)
  if kind == 0:  # stripes
    angle, cycles = rng.uniform(0, np.pi), rng.uniform(2, 8)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) / size
                           + rng.uniform(0, 2 * np.pi))
  elif kind == 1:  # checkerboard
    cell = rng.uniform(size / 16, size / 4)
    t = ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float32)
  else:  # smooth noise: a coarse random grid, bilinearly upsampled
    n = int(rng.integers(3, 8))
    grid = rng.uniform(size=(n, n))
    pos = (np.arange(size) + 0.5) * (n - 1) / size
    i0 = np.minimum(np.floor(pos).astype(int), n - 2)
    f = pos - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    t = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
  a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
  amount = rng.uniform(0.2, 0.6)  # texture contrast
  return a + (b - a) * (amount * t)[..., None]


def _shape_mask(kind: int, center: np.ndarray, extent: float, angle: float, size: int) -> np.ndarray:
  """Pixels (centres) inside a circle (diameter `extent`), an axis-aligned square (side `extent`)
  or an equilateral triangle (side `extent`, rotated by `angle`)."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  dy, dx = y - center[0], x - center[1]
  r = extent / 2
  if kind == 0:
    return dy ** 2 + dx ** 2 <= r ** 2
  if kind == 1:
    return (np.abs(dy) <= r) & (np.abs(dx) <= r)
  r = extent / np.sqrt(3)  # circumradius
  corners = [(r * np.sin(angle + 2 * np.pi * k / 3), r * np.cos(angle + 2 * np.pi * k / 3))
             for k in range(3)]
  signs = []
  for (ay, ax), (by, bx) in zip(corners, corners[1:] + corners[:1]):
    signs.append((bx - ax) * (dy - ay) - (by - ay) * (dx - ax))
  signs = np.stack(signs)
  return np.all(signs >= 0, axis=0) | np.all(signs <= 0, axis=0)


def render(config: ShapesConfig, split: str, index: int):
  """Example `index` of `split`: (image uint8 [S,S,3], mask uint8 [S,S,1], boxes [N,4], labels [N])."""
  image, mask, _, boxes, labels = render_instances(config, split, index)
  return image, mask, boxes, labels


def render_instances(config: ShapesConfig, split: str, index: int):
  """`render` with the object indices: (image, mask, instances uint8 [S,S,1] (0 background, i + 1
  object i), boxes, labels)."""
  rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], index])
  size = config.image_size
  image = _background(rng, size)
  mask = np.zeros((size, size), np.uint8)
  instances = np.zeros((size, size), np.uint8)
  taken = np.zeros((size, size), bool)  # boxes of the shapes so far, with a 1-pixel margin
  boxes, labels = [], []
  for _ in range(int(rng.integers(config.min_shapes, config.max_shapes + 1))):
    for _attempt in range(20):
      kind = int(rng.integers(len(CLASSES)))
      extent = rng.uniform(config.min_extent, config.max_extent) * size
      margin = extent / np.sqrt(3) if kind == 2 else extent / 2
      center = rng.uniform(margin, size - margin, 2)
      inside = _shape_mask(kind, center, extent, rng.uniform(0, 2 * np.pi), size)
      rows, cols = np.nonzero(inside)
      if len(rows):
        ymin, ymax, xmin, xmax = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        if not taken[ymin:ymax, xmin:xmax].any():
          break
    else:
      continue
    taken[max(ymin - 1, 0):ymax + 1, max(xmin - 1, 0):xmax + 1] = True
    colour = rng.uniform(0, 255, 3)
    while np.linalg.norm(colour - image[inside].mean(0)) < 100:  # visible against the background
      colour = rng.uniform(0, 255, 3)
    image[inside] = colour
    mask[inside] = kind + 1
    instances[inside] = len(boxes) + 1
    boxes.append(np.array([ymin, xmin, ymax, xmax], np.float32) / size)
    labels.append(kind)
  image = image + rng.normal(0, 6, image.shape)
  image = np.clip(np.round(image), 0, 255).astype(np.uint8)
  return (image, mask[..., None], instances[..., None],
          np.reshape(np.array(boxes, np.float32), (-1, 4)),
          np.array(labels, np.int64))


class Shapes(ProceduralSplits, tfds.core.GeneratorBasedBuilder):
  """Procedural shapes for segmentation and detection; needs no download."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "`instances`: per-pixel object index (per-object masks); images, "
                            "masks and objects unchanged."}
  BUILDER_CONFIGS = [
      ShapesConfig(name="128", description="128x128 images (the default).", image_size=128),
      ShapesConfig(name="64", description="64x64 images, for fast tests and CPU training "
                   "(relatively larger shapes: 13 to 29 pixels).", image_size=64,
                   min_extent=0.2, max_extent=0.45),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3), dtype=np.uint8),
            "mask": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
            "instances": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
            "objects": tfds.features.Sequence({
                "bbox": tfds.features.BBoxFeature(),
                "label": tfds.features.ClassLabel(names=CLASSES),
            }),
        }),
        supervised_keys=("image", "mask"),
    )

  def _example(self, split: str, index: int) -> dict:
    image, mask, instances, boxes, labels = render_instances(self.builder_config, split, index)
    objects = [{"bbox": tfds.features.BBox(*box), "label": int(label)}
               for box, label in zip(boxes.tolist(), labels)]
    return {"image": image, "mask": mask, "instances": instances, "objects": objects}
