"""Input pipelines: deterministic, resumable, per-host sharded batches of numpy arrays.

Training order is a pure function of (seed, epoch) and augmentation of
(seed, global example position), so `train_batches(..., start_step=k)` yields
exactly batches k, k+1, ... of a run started at step 0, in any process (as
long as TensorFlow's global seed is left alone, which jaxvision never sets).
"""

import dataclasses
import operator
import sys
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from jaxvision.data import augment, segmentation
from jaxvision.data.datasets import DatasetSpec, get_spec

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and a training loop need to know about a dataset.

  Attributes:
    name: dataset name (as in the config).
    num_classes: number of labels.
    image_shape: (H, W, C) of the images the pipeline produces.
    num_train: examples in the whole training split (all hosts).
    num_eval: examples in the whole eval split (all hosts).
  """

  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_eval: int


@dataclasses.dataclass(frozen=True)
class _Settings:
  """A dataset config resolved against the dataset's defaults."""

  spec: DatasetSpec
  data_dir: str | None
  image_shape: tuple[int, int, int]
  random_crop: bool
  crop_padding: int
  flip: bool
  shuffle_buffer: int


def _settings(dataset_config: Any) -> _Settings:
  """Validates `dataset_config` and fills in the dataset defaults."""
  spec = get_spec(dataset_config.name)
  size = dataset_config.image_size
  if not isinstance(size, int) or size < 0:
    raise ValueError("dataset_config.image_size must be an int >= 0 "
                     f"(0: native size); got {size!r}")
  padding = dataset_config.crop_padding
  if not isinstance(padding, int) or padding < -1:
    raise ValueError("dataset_config.crop_padding must be an int >= -1 "
                     f"(-1: dataset default, 0: no crop); got {padding!r}")
  if spec.crop in ("inception", "scale"):
    if padding > 0:
      raise ValueError(
          f"dataset_config.crop_padding: {spec.name} uses a random resized "
          f"crop ({spec.crop!r}), so crop_padding must be -1 (on) or 0 (off); "
          f"got {padding}")
    random_crop = padding != 0
  else:
    padding = spec.crop_padding if padding == -1 else padding
    random_crop = padding > 0
  buffer = dataset_config.shuffle_buffer
  if not isinstance(buffer, int) or buffer < 1:
    raise ValueError(
        f"dataset_config.shuffle_buffer must be an int >= 1; got {buffer!r}")
  flip = spec.flip if dataset_config.flip is None else bool(dataset_config.flip)
  height, _, channels = spec.image_shape
  side = size or height
  return _Settings(spec=spec, data_dir=dataset_config.data_dir,
                   image_shape=(side, side, channels), random_crop=random_crop,
                   crop_padding=padding, flip=flip, shuffle_buffer=buffer)


def _local_batch_size(global_batch_size: int) -> int:
  """The per-host batch size; ValueError unless it splits evenly over hosts."""
  count = jax.process_count()
  try:
    size = operator.index(global_batch_size)
  except TypeError:
    size = None
  if size is None or size < 1 or size % count:
    raise ValueError(
        "global_batch_size must be a positive multiple of the process count "
        f"(jax.process_count()={count}); got {global_batch_size!r}")
  return size // count


def _builder(settings: _Settings) -> tfds.core.DatasetBuilder:
  """The TFDS builder; prepares offline-buildable datasets when missing."""
  builder = tfds.builder(settings.spec.tfds_name, data_dir=settings.data_dir)
  if settings.spec.offline_build and not builder.is_prepared():
    shown = tqdm_utils._active  # pylint: disable=protected-access
    tfds.display_progress_bar(False)  # A second's work; no bars in the logs.
    try:
      builder.download_and_prepare()
    finally:
      tfds.display_progress_bar(shown)
  return builder


def _read(builder: tfds.core.DatasetBuilder, split: Any, spec: DatasetSpec,
          cache: bool) -> tf.data.Dataset:
  """Examples {image, label int32} (segmentation: {image, mask int32 [H, W]})
  of `split` in a fixed order.

  Images stay encoded for `crop="inception"` (decoded with the crop window).
  """
  decoders = ({"image": tfds.decode.SkipDecoding()}
              if spec.crop == "inception" else None)
  ds = builder.as_dataset(
      split=split, shuffle_files=False, decoders=decoders,
      read_config=tfds.ReadConfig(try_autocache=False))
  if spec.kind == "segmentation":
    ds = ds.map(lambda ex: segmentation.fields(ex, spec))
  else:
    ds = ds.map(lambda ex: {"image": ex["image"],
                            "label": tf.cast(ex["label"], tf.int32)})
  return ds.cache() if cache else ds


def _count(ds: tf.data.Dataset) -> int:
  """Number of elements of a finite dataset."""
  count = int(ds.cardinality())
  if count < 0:  # Unknown: count by reading.
    count = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
  return count


def _num_examples(builder: tfds.core.DatasetBuilder, split: str,
                  spec: DatasetSpec) -> int:
  """Examples in `split`, from the dataset's metadata when it has any."""
  if builder.info.splits:
    return builder.info.splits[split].num_examples
  # No recorded splits (mocked in tests, or not prepared: TFDS raises here).
  return _count(_read(builder, split, spec, cache=False))


def _train_image(image: tf.Tensor, s: _Settings, seed: tf.Tensor) -> tf.Tensor:
  """Augmented, normalised float32 training image."""
  spec = s.spec
  size = s.image_shape[0]
  crop_seed, flip_seed = augment.split_seed(seed, 2)
  if spec.crop == "inception":
    if s.random_crop:
      image = augment.inception_crop(image, size, crop_seed)
    else:
      image = augment.center_crop(image, size, spec.eval_crop_fraction)
  else:
    image = tf.cast(image, tf.float32)
    if size != spec.image_shape[0]:
      image = augment.resize(image, size)
    image = augment.pad_and_random_crop(image, s.crop_padding, crop_seed)
  if s.flip:
    image = augment.random_flip(image, flip_seed)
  image = augment.normalize(image, spec.mean, spec.std)
  return tf.ensure_shape(image, s.image_shape)


def _eval_image(image: tf.Tensor, s: _Settings) -> tf.Tensor:
  """Normalised float32 eval image (no randomness)."""
  spec = s.spec
  size = s.image_shape[0]
  if spec.crop == "inception":
    image = augment.center_crop(image, size, spec.eval_crop_fraction)
  else:
    image = tf.cast(image, tf.float32)
    if size != spec.image_shape[0]:
      image = augment.resize(image, size)
  image = augment.normalize(image, spec.mean, spec.std)
  return tf.ensure_shape(image, s.image_shape)


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.max_intra_op_parallelism = 1
  return options


def dataset_info(dataset_config: Any) -> DatasetInfo:
  """Returns the `DatasetInfo` of the dataset `dataset_config` describes."""
  from jaxvision.data import detection, multilabel  # (they import this module)
  if detection.is_detection(dataset_config.name):
    return detection.dataset_info(dataset_config)
  if multilabel.is_multilabel(dataset_config.name):
    return multilabel.dataset_info(dataset_config)
  s = _settings(dataset_config)
  builder = _builder(s)
  return DatasetInfo(
      name=s.spec.name, num_classes=s.spec.num_classes,
      image_shape=s.image_shape,
      num_train=_num_examples(builder, s.spec.train_split, s.spec),
      num_eval=_num_examples(builder, s.spec.eval_split, s.spec))


def train_batches(dataset_config: Any, global_batch_size: int, seed: int,
                  start_step: int = 0) -> Iterator[Batch]:
  """Infinite iterator of augmented training batches for this host.

  Args:
    dataset_config: `name`, `data_dir`, `image_size`, `crop_padding`, `flip`,
      `shuffle_buffer` (see train/configs/default.py).
    global_batch_size: batch size over all hosts; each host yields
      `global_batch_size // jax.process_count()` examples per batch.
    seed: fixes the shuffle order of every epoch and every augmentation.
    start_step: index of the first batch; resuming at step k yields batches
      k, k+1, ... of the run that started at 0 (skipping whole epochs cheaply).

  Returns:
    Iterator of {"image": float32 [B, H, W, C], "label": int32 [B]}
    (segmentation: "mask" int32 [B, H, W], 255 = ignore, instead of "label").
  """
  from jaxvision.data import detection, multilabel  # (they import this module)
  if detection.is_detection(dataset_config.name):
    return detection.train_batches(dataset_config, global_batch_size, seed, start_step)
  if multilabel.is_multilabel(dataset_config.name):
    return multilabel.train_batches(dataset_config, global_batch_size, seed, start_step)
  s = _settings(dataset_config)
  batch_size = _local_batch_size(global_batch_size)
  start_step = operator.index(start_step)
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0; got {start_step}")
  builder = _builder(s)
  index, count = jax.process_index(), jax.process_count()
  split = tfds.split_for_jax_process(
      s.spec.train_split, process_index=index, process_count=count,
      drop_remainder=True)
  examples = _read(builder, split, s.spec, cache=s.spec.cache)
  per_epoch = _count(examples)
  if per_epoch == 0:
    raise ValueError(f"dataset {s.spec.name}: split {split} of process {index} "
                     "has no examples")

  shuffle_key = tf.constant([seed, 0], tf.int64)
  augment_key = tf.constant([seed, 1], tf.int64)
  buffer = s.shuffle_buffer

  def epoch(e):
    key = tf.random.experimental.stateless_fold_in(shuffle_key, e)
    epoch_seed = tf.random.stateless_uniform(
        [], seed=key, minval=None, maxval=None, dtype=tf.int64)
    return examples.shuffle(buffer, seed=epoch_seed)

  def preprocess(position, ex):
    # Global position over all hosts: no two examples share a seed.
    key = tf.random.experimental.stateless_fold_in(
        augment_key, position * count + index)
    if s.spec.kind == "segmentation":
      return segmentation.train_example(ex, s, key)
    return {"image": _train_image(ex["image"], s, key), "label": ex["label"]}

  first = start_step * batch_size  # Position of the first example on this host.
  ds = tf.data.Dataset.range(first // per_epoch, sys.maxsize).flat_map(epoch)
  ds = ds.skip(first % per_epoch).enumerate(start=first)
  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds.with_options(_options())))


def eval_batches(dataset_config: Any, global_batch_size: int) -> Iterator[Batch]:
  """One pass over this host's part of the eval split, in full-size batches.

  The last batches are padded with rows of weight 0; every host yields the same
  number of batches, so collectives across hosts stay in step.

  Returns:
    Iterator of {"image": float32 [B, H, W, C], "label": int32 [B],
    "weight": float32 [B]} with weight 1 for real examples, 0 for padding
    (segmentation: "mask" int32 [B, H, W] instead of "label", all 255 in
    padding rows).
  """
  from jaxvision.data import detection, multilabel  # (they import this module)
  if detection.is_detection(dataset_config.name):
    return detection.eval_batches(dataset_config, global_batch_size)
  if multilabel.is_multilabel(dataset_config.name):
    return multilabel.eval_batches(dataset_config, global_batch_size)
  s = _settings(dataset_config)
  batch_size = _local_batch_size(global_batch_size)
  builder = _builder(s)
  index, count = jax.process_index(), jax.process_count()
  total = _num_examples(builder, s.spec.eval_split, s.spec)
  split = tfds.split_for_jax_process(
      s.spec.eval_split, process_index=index, process_count=count,
      drop_remainder=False)
  examples = _read(builder, split, s.spec, cache=False)
  local = _count(examples)
  largest_host = -(-total // count)
  num_batches = -(-largest_host // batch_size)

  if s.spec.kind == "segmentation":
    ds = examples.map(lambda ex: segmentation.eval_example(ex, s),
                      num_parallel_calls=tf.data.AUTOTUNE)
    pad_row = segmentation.padding_example(s)
  else:
    ds = examples.map(
        lambda ex: {"image": _eval_image(ex["image"], s), "label": ex["label"],
                    "weight": tf.constant(1.0, tf.float32)},
        num_parallel_calls=tf.data.AUTOTUNE)
    pad_row = {"image": tf.zeros(s.image_shape, tf.float32),
               "label": tf.constant(0, tf.int32),
               "weight": tf.constant(0.0, tf.float32)}
  padding = tf.data.Dataset.from_tensors(pad_row).repeat(
      num_batches * batch_size - local)
  ds = ds.concatenate(padding).batch(batch_size, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds.with_options(_options())))
