"""The one resumable training stream and the one padded evaluation pass, for every dataset kind.

Training order is a pure function of (seed, epoch) and augmentation of (seed, global example
position), so `train_batches(..., start_step=k)` yields exactly batches k, k+1, ... of a run
started at step 0, in any process (as long as TensorFlow's global seed is left alone, which
jaxvision never sets): whole epochs are skipped arithmetically, then examples within the epoch.
Evaluation batches are padded to full size with rows of weight 0, the same number of batches on
every host. A `Kind` says how one kind of dataset is read and transformed per example; its
images come out unnormalised (uint8 where no transform left the integers, else float32 in
[0, 255]), and the stream normalises them (`normalize=True`) or hands them on as they are for
the train step to normalise on the device (`normalize=False`: a quarter of the bytes for uint8).
"""

# Side effects first: no network for TFDS, quiet CPU-only TensorFlow.
from jaxvision.data import tfds_offline  # noqa: F401  isort: skip

import dataclasses
import operator
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxvision.data import augment
from jaxvision.data.datasets import DatasetInfo

Batch = dict[str, np.ndarray]


def _unchanged(batches: Iterator[Batch], settings: Any) -> Iterator[Batch]:
  del settings
  return batches


@dataclasses.dataclass(frozen=True)
class Kind:
  """How the stream reads one kind of dataset and transforms its examples.

  `S` below is the kind's resolved settings; the stream reads `S.spec.name` (for messages) and
  `S.shuffle_buffer`.

  Attributes:
    settings: dataset config -> S (validates the config; ValueError naming the key).
    info: S -> `DatasetInfo`.
    train_examples: S -> this host's training examples in a fixed order (cached if small).
    eval_examples: S -> (this host's eval examples in a fixed order, examples over all hosts).
    train_example: (example, S, stateless seed [2]) -> augmented training example.
    eval_example: (example, S) -> eval example, with `weight` 1.
    padding_example: S -> an eval row of weight 0.
    finish: (numpy batches, S) -> the batches the caller sees (default: unchanged).
  """

  settings: Callable[[Any], Any]
  info: Callable[[Any], DatasetInfo]
  train_examples: Callable[[Any], tf.data.Dataset]
  eval_examples: Callable[[Any], tuple[tf.data.Dataset, int]]
  train_example: Callable[[dict, Any, tf.Tensor], dict]
  eval_example: Callable[[dict, Any], dict]
  padding_example: Callable[[Any], dict]
  finish: Callable[[Iterator[Batch], Any], Iterator[Batch]] = _unchanged


def local_batch_size(global_batch_size: int) -> int:
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


def options() -> tf.data.Options:
  """Deterministic tf.data options (the batches do not depend on thread timing)."""
  out = tf.data.Options()
  out.deterministic = True
  out.threading.max_intra_op_parallelism = 1
  return out


def count(ds: tf.data.Dataset) -> int:
  """Number of elements of a finite dataset."""
  n = int(ds.cardinality())
  if n < 0:  # Unknown: count by reading.
    n = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
  return n


def _normalizer(settings: Any, normalize: bool) -> Callable[[dict], dict]:
  """Example -> the example with its image normalised with the dataset's mean and std (or as
  it is, for `normalize=False`)."""
  if not normalize:
    return lambda ex: ex
  spec = settings.spec
  return lambda ex: {**ex, "image": augment.normalize(ex["image"], spec.mean, spec.std)}


def _numpy(ds: tf.data.Dataset, kind: Kind, settings: Any) -> Iterator[Batch]:
  return kind.finish(iter(tfds.as_numpy(ds.with_options(options()))), settings)


def dataset_info(kind: Kind, dataset_config: Any) -> DatasetInfo:
  return kind.info(kind.settings(dataset_config))


def train_batches(kind: Kind, dataset_config: Any, global_batch_size: int, seed: int,
                  start_step: int = 0, *, normalize: bool = True) -> Iterator[Batch]:
  """Infinite iterator of this host's augmented training batches, from batch `start_step` on.

  Each host yields `global_batch_size // jax.process_count()` examples per batch; `seed`
  fixes the shuffle order of every epoch and every augmentation; `normalize=False` leaves the
  images unnormalised (see the module doc).
  """
  s = kind.settings(dataset_config)
  batch_size = local_batch_size(global_batch_size)
  start_step = operator.index(start_step)
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0; got {start_step}")
  examples = kind.train_examples(s)
  per_epoch = count(examples)
  index, hosts = jax.process_index(), jax.process_count()
  if per_epoch == 0:
    raise ValueError(f"dataset {s.spec.name}: the training split of process {index} has no "
                     "examples")
  shuffle_key = tf.constant([seed, 0], tf.int64)
  augment_key = tf.constant([seed, 1], tf.int64)
  finish = _normalizer(s, normalize)

  def epoch(e):
    key = tf.random.experimental.stateless_fold_in(shuffle_key, e)
    epoch_seed = tf.random.stateless_uniform(
        [], seed=key, minval=None, maxval=None, dtype=tf.int64)
    return examples.shuffle(s.shuffle_buffer, seed=epoch_seed)

  def preprocess(position, ex):
    # Global position over all hosts: no two examples share a seed.
    key = tf.random.experimental.stateless_fold_in(augment_key, position * hosts + index)
    return finish(kind.train_example(ex, s, key))

  first = start_step * batch_size  # Position of the first example on this host.
  ds = tf.data.Dataset.range(first // per_epoch, sys.maxsize).flat_map(epoch)
  ds = ds.skip(first % per_epoch).enumerate(start=first)
  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return _numpy(ds, kind, s)


def eval_batches(kind: Kind, dataset_config: Any, global_batch_size: int, *,
                 normalize: bool = True) -> Iterator[Batch]:
  """One pass over this host's part of the eval split in full-size batches.

  The last batches are padded with `kind.padding_example` rows (weight 0, a zero image of the
  real images' dtype); every host yields the same number of batches, so collectives across
  hosts stay in step.
  """
  s = kind.settings(dataset_config)
  batch_size = local_batch_size(global_batch_size)
  examples, total = kind.eval_examples(s)
  local = count(examples)
  largest_host = -(-total // jax.process_count())
  num_batches = -(-largest_host // batch_size)
  finish = _normalizer(s, normalize)
  ds = examples.map(lambda ex: finish(kind.eval_example(ex, s)),
                    num_parallel_calls=tf.data.AUTOTUNE)
  pad = kind.padding_example(s)
  pad["image"] = tf.zeros(pad["image"].shape, ds.element_spec["image"].dtype)
  padding = tf.data.Dataset.from_tensors(pad).repeat(num_batches * batch_size - local)
  ds = ds.concatenate(padding).batch(batch_size, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return _numpy(ds, kind, s)
