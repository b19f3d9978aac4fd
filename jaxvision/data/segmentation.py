"""Per-example transforms of segmentation datasets: the same crop, scale and flip for image and mask.

The stream (`jaxvision.data.stream`) orders, shards, seeds and batches the examples exactly as
for classification (deterministic and resumable) and calls these for datasets of kind
"segmentation". Masks are int32 [H, W] with 255 = ignore; image and mask are resized to the
output size when they do not have it (image bilinear, mask nearest).
"""

from __future__ import annotations

import math

import tensorflow as tf

from jaxvision.data import augment, source

IGNORE_LABEL = 255


def fields(ex: dict, spec) -> dict:
  """{image, mask int32 [H, W]} of a TFDS example, stored mask values v < len(spec.mask_map)
  mapped to spec.mask_map[v]; other values are kept (the task's batch check rejects them)."""
  mask = tf.cast(ex[spec.mask_key], tf.int32)[..., 0]
  if spec.mask_map is not None:
    table = list(spec.mask_map) + list(range(len(spec.mask_map), 256))
    mask = tf.gather(tf.constant(table, tf.int32), mask)
  return {"image": ex["image"], "mask": mask}


def _resized(image: tf.Tensor, mask: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Float32 image and int32 mask at [size, size] (unchanged if already that size)."""
  image = tf.cast(image, tf.float32)
  if image.shape[0] == size and image.shape[1] == size:
    return image, mask
  image = augment.resize(image, size)
  mask = tf.image.resize(mask[..., None], (size, size), method="nearest")[..., 0]
  return image, mask


def _random_scale_and_crop(image, mask, size: int, scale_range, pad_value, seed):
  """Rescales image and mask by one random factor, pads to at least `size` (the image with
  `pad_value`, the mask with IGNORE_LABEL) and takes the same random size x size crop of both."""
  scale_seed, crop_seed = augment.split_seed(seed, 2)
  lo, hi = (math.log(v) for v in scale_range)
  factor = tf.exp(tf.random.stateless_uniform([], scale_seed, lo, hi))
  side = tf.maximum(tf.cast(tf.round(factor * size), tf.int32), 1)
  image = tf.clip_by_value(tf.image.resize(image, (side, side), method="bilinear", antialias=True),
                           0.0, 255.0)
  mask = tf.image.resize(mask[..., None], (side, side), method="nearest")[..., 0]
  pad = tf.maximum(size - side, 0)
  image = tf.pad(image - pad_value, [[0, pad], [0, pad], [0, 0]]) + pad_value
  mask = tf.pad(mask, [[0, pad], [0, pad]], constant_values=IGNORE_LABEL)
  channels = image.shape[-1]
  both = tf.concat([image, tf.cast(mask, tf.float32)[..., None]], axis=-1)
  both = tf.image.stateless_random_crop(both, [size, size, channels + 1], seed=crop_seed)
  return both[..., :channels], tf.cast(both[..., channels], tf.int32)


def train_example(ex: dict, settings, seed: tf.Tensor) -> dict:
  """Augmented training example {image float32 [S, S, C] in [0, 255], mask int32 [S, S]}."""
  spec = settings.spec
  size = settings.image_shape[0]
  crop_seed, flip_seed = augment.split_seed(seed, 2)
  image, mask = _resized(ex["image"], ex["mask"], size)
  if settings.random_crop and tuple(spec.scale_range) != (1.0, 1.0):
    pad_value = 255.0 * tf.constant(spec.mean, tf.float32)  # normalises to 0
    image, mask = _random_scale_and_crop(image, mask, size, spec.scale_range, pad_value, crop_seed)
  if settings.flip:
    both = augment.random_flip(tf.concat([image, tf.cast(mask, tf.float32)[..., None]], -1),
                               flip_seed)
    image, mask = both[..., :-1], tf.cast(both[..., -1], tf.int32)
  return {"image": tf.ensure_shape(image, settings.image_shape),
          "mask": tf.ensure_shape(mask, settings.image_shape[:2])}


def eval_example(ex: dict, settings) -> dict:
  """Eval example {image, mask, weight 1}: resized to the output size, no randomness."""
  image, mask = _resized(ex["image"], ex["mask"], settings.image_shape[0])
  return {"image": tf.ensure_shape(image, settings.image_shape),
          "mask": tf.ensure_shape(mask, settings.image_shape[:2]),
          "weight": tf.constant(1.0, tf.float32)}


def padding_example(settings) -> dict:
  """An eval row of weight 0 (its mask all IGNORE_LABEL)."""
  return {"image": tf.zeros(settings.image_shape, tf.float32),
          "mask": tf.fill(settings.image_shape[:2], tf.constant(IGNORE_LABEL, tf.int32)),
          "weight": tf.constant(0.0, tf.float32)}


KIND = source.spec_kind(fields, train_example, eval_example, padding_example)
