"""Detection input pipelines: images with padded boxes, deterministic and resumable.

Batches: `image` float32 [B, S, S, C] (normalised), `boxes` float32 [B, N, 4] as (ymin, xmin,
ymax, xmax) normalised to the image, `classes` int32 [B, N], `valid` bool [B, N]; N is the
dataset's `max_boxes`. With `dataset.instance_masks` (datasets with per-object masks, e.g. the
shapes), also `instance_masks` uint8 [B, N, S, S] (1 inside object n, 0 elsewhere and in padding
rows), moved, cropped and flipped with the image. Evaluation adds `difficult` bool [B, N] (VOC
"difficult", COCO "is_crowd": ignored by the metrics), `image_size` int32 [B, 2] (the original height and width,
for pixel-based metrics) and `weight` [B] (0 for padding rows). Training drops difficult/crowd
boxes (as darknet's VOC labels do).

Training augmentation (YOLO's): colour jitter (exposure and saturation x [1/1.5, 1.5], hue
+-0.1 of the circle), a random rescaling of the image by `scale_range` placed at a random
offset in the output square (a crop when larger, padding with the mean colour when smaller),
and a left-right flip; boxes move with the image, those whose centre leaves it are dropped, the
rest are clipped to it. Images are resized to a square (aspect ratio not kept, as YOLO does).

The stream (`jaxvision.data.stream`) orders, shards, seeds and batches the examples as for every
dataset kind, so `start_step=k` resumes exactly. An example with more than N
boxes is an error, unless `drop_extra_boxes` is set: then the first N are kept and a warning
says how many were dropped.
"""

from __future__ import annotations

# Side effects first: no network for TFDS, quiet CPU-only TensorFlow.
from jaxvision.data import tfds_offline  # noqa: F401  isort: skip

import dataclasses
import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxvision.data import augment, source, stream
from jaxvision.data.datasets import DatasetInfo, check_shuffle_buffer

_log = logging.getLogger(__name__)

_IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
_SHAPES_MEAN_STD = dict(mean=(0.504, 0.484, 0.509), std=(0.260, 0.248, 0.256))


@dataclasses.dataclass(frozen=True)
class DetectionSpec:
  """A detection dataset.

  Attributes:
    name: the name used in configs.
    train: (TFDS name, split) sources of the training examples, concatenated.
    eval: (TFDS name, split) of the evaluation examples.
    num_classes: object classes (no background class).
    image_size: default side of the square network input.
    mean, std: per-channel statistics of pixel values scaled to [0, 1].
    max_boxes: N, the padded number of boxes per image.
    difficult_key: `objects` feature marking boxes the metrics ignore (None: none).
    instances_key: feature holding each pixel's object index (0 background, i + 1 object i;
      None: the dataset has no per-object masks).
    pixel_plus_one: VOC's inclusive pixel boxes (width = x2 - x1 + 1) for the VOC AP.
    scale_range: random rescaling factors of training images.
    flip, colour: default training flips and colour jitter.
    cache: keep the decoded training examples in memory (small datasets only).
    offline_build: `download_and_prepare()` needs no network (built when missing).
  """
  name: str
  train: tuple[tuple[str, str], ...]
  eval: tuple[str, str]
  num_classes: int
  image_size: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  max_boxes: int
  difficult_key: str | None = None
  instances_key: str | None = None
  pixel_plus_one: bool = False
  scale_range: tuple[float, float] = (0.75, 1.25)
  flip: bool = True
  colour: bool = True
  cache: bool = False
  offline_build: bool = False


_VOC = dict(num_classes=20, image_size=448, max_boxes=64, difficult_key="is_difficult",
            pixel_plus_one=True, **_IMAGENET)
# Synthetic shapes of random colour and size: mild rescaling, no colour jitter.
_SHAPES = dict(num_classes=3, max_boxes=8, scale_range=(0.9, 1.1), colour=False, cache=True,
               offline_build=True, instances_key="instances", **_SHAPES_MEAN_STD)

DATASETS: dict[str, DetectionSpec] = {s.name: s for s in (
    DetectionSpec(name="shapes_detection", train=(("shapes/128", "train"),),
                  eval=("shapes/128", "test"), image_size=128, **_SHAPES),
    DetectionSpec(name="shapes_detection/64", train=(("shapes/64", "train"),),
                  eval=("shapes/64", "test"), image_size=64, **_SHAPES),
    DetectionSpec(name="voc/2007", train=(("voc/2007", "train+validation"),),
                  eval=("voc/2007", "test"), **_VOC),
    # The usual "07+12": VOC2007 and VOC2012 trainval, tested on VOC2007 test.
    DetectionSpec(name="voc/2007+2012",
                  train=(("voc/2007", "train+validation"), ("voc/2012", "train+validation")),
                  eval=("voc/2007", "test"), **_VOC),
    DetectionSpec(name="coco/2017", train=(("coco/2017", "train"),),
                  eval=("coco/2017", "validation"), num_classes=80, image_size=416,
                  max_boxes=100, difficult_key="is_crowd", **_IMAGENET),
)}


def is_detection(name: str) -> bool:
  return isinstance(name, str) and name in DATASETS


def get_spec(name: str) -> DetectionSpec:
  if not is_detection(name):
    raise ValueError(f"dataset name: unknown detection dataset {name!r}; expected one of "
                     f"{sorted(DATASETS)}")
  return DATASETS[name]


@dataclasses.dataclass(frozen=True)
class Settings:
  """A detection dataset config resolved against the spec's defaults."""
  spec: DetectionSpec
  data_dir: str | None
  size: int
  random_crop: bool
  flip: bool
  shuffle_buffer: int
  max_boxes: int
  drop_extra_boxes: bool
  instance_masks: bool = False


def settings(c: Any) -> Settings:
  """Validates a dataset config against the spec's defaults."""
  spec = get_spec(c.name)
  size = c.image_size
  if not isinstance(size, int) or size < 0:
    raise ValueError(f"dataset_config.image_size must be an int >= 0 (0: {spec.image_size}); "
                     f"got {size!r}")
  padding = c.crop_padding
  if padding not in (-1, 0):
    raise ValueError(f"dataset_config.crop_padding: {spec.name} uses a random rescale and crop, "
                     f"so crop_padding must be -1 (on) or 0 (off); got {padding!r}")
  shuffle_buffer = check_shuffle_buffer(c.shuffle_buffer)
  max_boxes = getattr(c, "max_boxes", 0) or spec.max_boxes
  if not isinstance(max_boxes, int) or max_boxes < 1:
    raise ValueError(f"dataset_config.max_boxes must be an int >= 1 (0: {spec.max_boxes}); "
                     f"got {max_boxes!r}")
  instance_masks = bool(getattr(c, "instance_masks", False))
  if instance_masks and spec.instances_key is None:
    raise ValueError(f"dataset_config.instance_masks: {spec.name} has no per-object masks; "
                     f"expected False, or a dataset with them (e.g. shapes_detection), got True")
  return Settings(spec=spec, data_dir=c.data_dir, size=size or spec.image_size,
                  random_crop=padding != 0, flip=spec.flip if c.flip is None else bool(c.flip),
                  shuffle_buffer=shuffle_buffer, max_boxes=max_boxes,
                  drop_extra_boxes=bool(getattr(c, "drop_extra_boxes", False)),
                  instance_masks=instance_masks)


def _fields(ex: dict, s: Settings) -> dict:
  """{image uint8, boxes [n, 4], classes int32 [n], difficult bool [n], dropped int32} with at
  most N boxes (an error beyond N unless drop_extra_boxes)."""
  objects = ex["objects"]
  boxes = tf.cast(objects["bbox"], tf.float32)
  classes = tf.cast(objects["label"], tf.int32)
  key = s.spec.difficult_key
  difficult = (tf.cast(objects[key], tf.bool) if key else tf.zeros_like(classes, tf.bool))
  # Equal in real data; TFDS's mock data draws each sequence's length independently.
  n = tf.reduce_min([tf.shape(boxes)[0], tf.shape(classes)[0], tf.shape(difficult)[0]])
  boxes, classes, difficult = boxes[:n], classes[:n], difficult[:n]
  if not s.drop_extra_boxes:
    check = tf.debugging.assert_less_equal(
        n, s.max_boxes, message=f"{s.spec.name}: an example has more boxes than max_boxes="
        f"{s.max_boxes}; raise dataset.max_boxes or set dataset.drop_extra_boxes=True")
    with tf.control_dependencies([check]):
      n = tf.identity(n)
  keep = tf.minimum(n, s.max_boxes)
  out = {"image": ex["image"], "boxes": boxes[:keep], "classes": classes[:keep],
         "difficult": difficult[:keep], "dropped": n - keep,
         "image_size": tf.shape(ex["image"])[:2]}
  if s.instance_masks:
    out["masks"] = instance_masks(ex[s.spec.instances_key], keep)
  return out


def instance_masks(instances: tf.Tensor, n) -> tf.Tensor:
  """Object index map [H, W, 1] (0 background, i + 1 object i) -> uint8 masks [H, W, n] of
  objects 0..n-1 (channels last, so that they move with the image)."""
  ids = tf.cast(instances, tf.int32)
  return tf.cast(tf.equal(ids, tf.range(1, n + 1, dtype=tf.int32)), tf.uint8)


def read(sources: source.Sources, s: Settings, *, shard: bool,
         drop_remainder: bool = True) -> tf.data.Dataset:
  """Examples {image uint8, boxes, classes, difficult, dropped, image_size} of `sources` in a
  fixed order: this host's share (`shard`) or all of them."""
  return source.read(sources, lambda ex: _fields(ex, s), data_dir=s.data_dir,
                     offline_build=s.spec.offline_build, shard=shard,
                     drop_remainder=drop_remainder)


def _pad(x: tf.Tensor, n: int) -> tf.Tensor:
  pad = [[0, n - tf.shape(x)[0]]] + [[0, 0]] * (len(x.shape) - 1)
  return tf.ensure_shape(tf.pad(x, pad), [n, *x.shape[1:]])


def _colour(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """YOLO's HSV jitter on a float image in [0, 255]."""
  exposure_seed, saturation_seed, hue_seed = augment.split_seed(seed, 3)
  image = image / 255.0
  image = tf.image.stateless_random_saturation(image, 1 / 1.5, 1.5, saturation_seed)
  image = tf.image.stateless_random_hue(image, 0.1, hue_seed)
  log_exposure = tf.random.stateless_uniform([], exposure_seed, -math.log(1.5), math.log(1.5))
  return tf.clip_by_value(image * tf.exp(log_exposure), 0.0, 1.0) * 255.0


def _scale_and_place(image, boxes, size: int, scale_range, pad_value, seed, masks=None):
  """Rescales by a random factor and places the result at a random offset in a size x size
  canvas; returns the image, the boxes in the canvas' normalised coordinates and the masks
  [H, W, n] moved the same way (bilinear, thresholded at 0.5; None without)."""
  scale_seed, offset_seed = augment.split_seed(seed, 2)
  lo, hi = (math.log(v) for v in scale_range)
  side = tf.maximum(tf.cast(tf.round(tf.exp(tf.random.stateless_uniform([], scale_seed, lo, hi))
                                     * size), tf.int32), 1)
  image = tf.clip_by_value(tf.image.resize(image, (side, side), antialias=True), 0.0, 255.0)
  # Top-left corner of the rescaled image in the canvas: < 0 crops, > 0 pads.
  lo_off, hi_off = tf.minimum(0, size - side), tf.maximum(0, size - side)
  offset = tf.random.stateless_uniform([2], offset_seed, lo_off, hi_off + 1, dtype=tf.int32)
  big = tf.maximum(side, size)
  pad = tf.maximum(offset, 0)
  canvas = tf.image.pad_to_bounding_box(image - pad_value, pad[0], pad[1], big, big) + pad_value
  crop = tf.maximum(-offset, 0)
  image = tf.image.crop_to_bounding_box(canvas, crop[0], crop[1], size, size)
  if masks is not None:
    masks = tf.image.resize(tf.cast(masks, tf.float32), (side, side))
    masks = tf.image.pad_to_bounding_box(masks, pad[0], pad[1], big, big)
    masks = tf.image.crop_to_bounding_box(masks, crop[0], crop[1], size, size)
    masks = tf.cast(masks >= 0.5, tf.uint8)
  shift = tf.cast(tf.tile(offset, [2]), tf.float32)
  boxes = (boxes * tf.cast(side, tf.float32) + shift) / float(size)
  return image, boxes, masks


def _keep_inside(boxes, classes, masks=None):
  """Drops boxes (and their masks [H, W, n]) whose centre is outside [0, 1)^2 and clips the rest
  to the image."""
  centre = (boxes[:, :2] + boxes[:, 2:]) / 2
  inside = tf.reduce_all((centre >= 0.0) & (centre < 1.0), axis=1)
  boxes = tf.clip_by_value(tf.boolean_mask(boxes, inside), 0.0, 1.0)
  if masks is not None:
    masks = tf.boolean_mask(masks, inside, axis=2)
  return boxes, tf.boolean_mask(classes, inside), masks


def _flip(image, boxes, seed, masks=None):
  flip = tf.random.stateless_uniform([], seed) < 0.5
  image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
  if masks is not None:
    masks = tf.cond(flip, lambda: masks[:, ::-1], lambda: masks)
  flipped = tf.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=1)
  return image, tf.cond(flip, lambda: flipped, lambda: boxes), masks


def _padded_masks(masks, s: Settings) -> tf.Tensor:
  """Masks [S, S, n] -> uint8 [max_boxes, S, S], padding rows zero."""
  masks = tf.transpose(tf.cast(masks, tf.uint8), [2, 0, 1])
  return tf.ensure_shape(_pad(masks, s.max_boxes), (s.max_boxes, s.size, s.size))


def _resize_masks(masks, size: int) -> tf.Tensor:
  """Masks [H, W, n] resized to size x size (bilinear, thresholded at 0.5)."""
  if masks.shape[0] == size and masks.shape[1] == size:
    return masks
  return tf.cast(tf.image.resize(tf.cast(masks, tf.float32), (size, size)) >= 0.5, tf.uint8)


def train_example(ex: dict, s: Settings, seed: tf.Tensor) -> dict:
  """Augmented training example (see the module doc), boxes padded to max_boxes."""
  spec = s.spec
  colour_seed, crop_seed, flip_seed = augment.split_seed(seed, 3)
  keep = tf.logical_not(ex["difficult"])
  boxes, classes = tf.boolean_mask(ex["boxes"], keep), tf.boolean_mask(ex["classes"], keep)
  masks = tf.boolean_mask(ex["masks"], keep, axis=2) if s.instance_masks else None
  image = tf.cast(ex["image"], tf.float32)
  if spec.colour:
    image = _colour(image, colour_seed)
  if s.random_crop:
    pad_value = 255.0 * tf.constant(spec.mean, tf.float32)  # normalises to 0
    image, boxes, masks = _scale_and_place(image, boxes, s.size, spec.scale_range, pad_value,
                                           crop_seed, masks)
    boxes, classes, masks = _keep_inside(boxes, classes, masks)
  else:
    image = augment.resize(image, s.size)
    masks = None if masks is None else _resize_masks(masks, s.size)
  if s.flip:
    image, boxes, masks = _flip(image, boxes, flip_seed, masks)
  n = tf.shape(classes)[0]
  out = {"image": tf.ensure_shape(image, (s.size, s.size, len(spec.mean))),
         "boxes": _pad(boxes, s.max_boxes), "classes": _pad(classes, s.max_boxes),
         "valid": tf.range(s.max_boxes) < n, "dropped": ex["dropped"]}
  if masks is not None:
    out["instance_masks"] = _padded_masks(masks, s)
  return out


def eval_example(ex: dict, s: Settings) -> dict:
  """Eval example: resized, boxes padded to max_boxes, `weight` 1."""
  image = augment.resize(ex["image"], s.size)
  n = tf.shape(ex["classes"])[0]
  out = {"image": tf.ensure_shape(image, (s.size, s.size, len(s.spec.mean))),
         "boxes": _pad(ex["boxes"], s.max_boxes), "classes": _pad(ex["classes"], s.max_boxes),
         "valid": tf.range(s.max_boxes) < n, "difficult": _pad(ex["difficult"], s.max_boxes),
         "image_size": tf.cast(ex["image_size"], tf.int32), "dropped": ex["dropped"],
         "weight": tf.constant(1.0, tf.float32)}
  if s.instance_masks:
    out["instance_masks"] = _padded_masks(_resize_masks(ex["masks"], s.size), s)
  return out


def padding_example(s: Settings) -> dict:
  """An eval row of weight 0 (no valid boxes)."""
  n, channels = s.max_boxes, len(s.spec.mean)
  out = {
      "image": tf.zeros((s.size, s.size, channels), tf.float32),
      "boxes": tf.zeros((n, 4), tf.float32), "classes": tf.zeros((n,), tf.int32),
      "valid": tf.zeros((n,), tf.bool), "difficult": tf.zeros((n,), tf.bool),
      "image_size": tf.constant([s.size, s.size], tf.int32), "dropped": tf.constant(0, tf.int32),
      "weight": tf.constant(0.0, tf.float32),
  }
  if s.instance_masks:
    out["instance_masks"] = tf.zeros((n, s.size, s.size), tf.uint8)
  return out


def finish(batches: Iterator[stream.Batch], s: Settings) -> Iterator[stream.Batch]:
  """The batches without the `dropped` count, which is reported as a warning."""
  total = 0
  for batch in batches:
    dropped = int(batch.pop("dropped").sum())
    if dropped:
      total += dropped
      _log.warning("%s: dropped %d boxes beyond max_boxes=%d in this batch (%d so far)",
                   s.spec.name, dropped, s.max_boxes, total)
    yield batch


def _num_examples(sources: source.Sources, s: Settings) -> int:
  return source.num_examples(sources, data_dir=s.data_dir, offline_build=s.spec.offline_build)


def info(s: Settings) -> DatasetInfo:
  """The `DatasetInfo` of a detection dataset."""
  return DatasetInfo(name=s.spec.name, num_classes=s.spec.num_classes,
                     image_shape=(s.size, s.size, len(s.spec.mean)),
                     num_train=_num_examples(s.spec.train, s),
                     num_eval=_num_examples((s.spec.eval,), s), mean=tuple(s.spec.mean),
                     std=tuple(s.spec.std))


def train_examples(s: Settings) -> tf.data.Dataset:
  ds = read(s.spec.train, s, shard=True)
  return ds.cache() if s.spec.cache else ds


def eval_examples(s: Settings) -> tuple[tf.data.Dataset, int]:
  return read((s.spec.eval,), s, shard=True, drop_remainder=False), _num_examples((s.spec.eval,), s)


KIND = stream.Kind(settings=settings, info=info, train_examples=train_examples,
                   eval_examples=eval_examples, train_example=train_example,
                   eval_example=eval_example, padding_example=padding_example, finish=finish)


def training_box_sizes(dataset_config: Any, limit: int | None = None) -> np.ndarray:
  """(w, h) [M, 2] of the training boxes (image fractions), e.g. for YOLOv2's k-means anchors
  (`jaxvision.ops.kmeans_anchors`); difficult boxes excluded; `limit` examples at most."""
  s = settings(dataset_config)
  ds = read(s.spec.train, s, shard=False)
  if limit:
    ds = ds.take(limit)
  ds = ds.map(lambda ex: tf.boolean_mask(ex["boxes"], tf.logical_not(ex["difficult"])))
  sizes = [b[:, 2:] - b[:, :2] for b in tfds.as_numpy(ds)]
  yx = np.concatenate(sizes) if sizes else np.zeros((0, 2), np.float32)
  return yx[:, ::-1].copy()  # (h, w) -> (w, h)
