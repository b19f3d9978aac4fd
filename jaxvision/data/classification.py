"""Per-example transforms of classification datasets: {image, label int32} examples.

Training: a random crop (zero padding then a crop back to size, or Inception's random resized
crop of the JPEG) and an optional left-right flip. Evaluation: resize (or Inception's centre
crop). Images stay uint8 unless resized (then float32 in [0, 255]); the stream
(`jaxvision.data.stream`) normalises them where asked, orders, shards, seeds and batches.
"""

import tensorflow as tf

from jaxvision.data import augment, source
from jaxvision.data.datasets import DatasetSpec, Settings


def fields(ex: dict, spec: DatasetSpec) -> dict:
  """{image, label int32} of a TFDS example."""
  del spec
  return {"image": ex["image"], "label": tf.cast(ex["label"], tf.int32)}


def _train_image(image: tf.Tensor, s: Settings, seed: tf.Tensor) -> tf.Tensor:
  """Augmented training image: uint8, or float32 in [0, 255] where resized."""
  spec = s.spec
  size = s.image_shape[0]
  crop_seed, flip_seed = augment.split_seed(seed, 2)
  if spec.crop == "inception":
    if s.random_crop:
      image = augment.inception_crop(image, size, crop_seed)
    else:
      image = augment.center_crop(image, size, spec.eval_crop_fraction)
  else:
    if size != spec.image_shape[0]:
      image = augment.resize(tf.cast(image, tf.float32), size)
    image = augment.pad_and_random_crop(image, s.crop_padding, crop_seed)
  if s.flip:
    image = augment.random_flip(image, flip_seed)
  return tf.ensure_shape(image, s.image_shape)


def _eval_image(image: tf.Tensor, s: Settings) -> tf.Tensor:
  """Eval image (no randomness): uint8, or float32 in [0, 255] where resized."""
  spec = s.spec
  size = s.image_shape[0]
  if spec.crop == "inception":
    image = augment.center_crop(image, size, spec.eval_crop_fraction)
  elif size != spec.image_shape[0]:
    image = augment.resize(tf.cast(image, tf.float32), size)
  return tf.ensure_shape(image, s.image_shape)


def train_example(ex: dict, s: Settings, seed: tf.Tensor) -> dict:
  """Augmented training example {image [S, S, C], label int32}."""
  return {"image": _train_image(ex["image"], s, seed), "label": ex["label"]}


def eval_example(ex: dict, s: Settings) -> dict:
  """Eval example {image, label, weight 1}."""
  return {"image": _eval_image(ex["image"], s), "label": ex["label"],
          "weight": tf.constant(1.0, tf.float32)}


def padding_example(s: Settings) -> dict:
  """An eval row of weight 0."""
  return {"image": tf.zeros(s.image_shape, tf.float32), "label": tf.constant(0, tf.int32),
          "weight": tf.constant(0.0, tf.float32)}


KIND = source.spec_kind(fields, train_example, eval_example, padding_example)
