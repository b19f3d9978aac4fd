"""Per-example image transforms in TensorFlow; all randomness is stateless.

Every random transform takes an explicit `seed` (int32/int64 tensor of shape [2]),
so the same seed gives the same output in any process, on any run.
"""

from collections.abc import Sequence

import tensorflow as tf


def split_seed(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
  """Splits one stateless seed into `num` independent ones."""
  return list(tf.unstack(tf.random.experimental.stateless_split(seed, num)))


def normalize(image: tf.Tensor, mean: Sequence[float],
              std: Sequence[float]) -> tf.Tensor:
  """Maps pixel values in [0, 255] to float32 `(x / 255 - mean) / std` per channel."""
  image = tf.cast(image, tf.float32) / 255.0
  return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """Resizes to [size, size] (bilinear, antialiased); float32 in the input range."""
  image = tf.image.resize(tf.cast(image, tf.float32), (size, size),
                          method="bilinear", antialias=True)
  return tf.clip_by_value(image, 0.0, 255.0)


def pad_and_random_crop(image: tf.Tensor, padding: int,
                        seed: tf.Tensor) -> tf.Tensor:
  """Zero-pads `padding` pixels on every side, then crops back to the input size."""
  if padding <= 0:
    return image
  shape = tf.shape(image)
  padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
  return tf.image.stateless_random_crop(padded, shape, seed=seed)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Flips left-right with probability 1/2."""
  return tf.image.stateless_random_flip_left_right(image, seed=seed)


def inception_crop(image_bytes: tf.Tensor, size: int, seed: tf.Tensor, *,
                   area_range: tuple[float, float] = (0.08, 1.0),
                   aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
                   ) -> tf.Tensor:
  """Inception-style random resized crop of a JPEG; float32 [size, size, 3].

  Samples a window covering `area_range` of the image with an aspect ratio in
  `aspect_ratio_range` (the whole image if 10 attempts fail), decodes only that
  window, and resizes it to `size`.
  """
  shape = tf.io.extract_jpeg_shape(image_bytes)
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4)),
      seed=seed, min_object_covered=0.1, aspect_ratio_range=aspect_ratio_range,
      area_range=area_range, max_attempts=10, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
  image = tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3)
  return resize(image, size)


def center_crop(image_bytes: tf.Tensor, size: int,
                crop_fraction: float) -> tf.Tensor:
  """Centre square of side `crop_fraction` * shorter side of a JPEG, resized to `size`.

  With `crop_fraction=224/256` and `size=224` this is the usual eval transform:
  resize the shorter side to 256, take the centre 224 x 224.
  """
  shape = tf.io.extract_jpeg_shape(image_bytes)
  height, width = shape[0], shape[1]
  side = tf.cast(crop_fraction * tf.cast(tf.minimum(height, width), tf.float32),
                 tf.int32)
  side = tf.maximum(side, 1)
  window = tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])
  image = tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3)
  return resize(image, size)
