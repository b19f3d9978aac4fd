"""Reading TFDS splits in a fixed order: prepared builders, each host's share, example counts;
and the `Kind` of the datasets a `DatasetSpec` describes (classification, segmentation)."""

# Side effects first: no network for TFDS, quiet CPU-only TensorFlow; the offline builders.
from jaxvision.data import tfds_offline  # noqa: F401  isort: skip
from jaxvision.data import builders  # noqa: F401  isort: skip

from collections.abc import Callable

import jax
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from jaxvision.data import stream
from jaxvision.data.datasets import DatasetInfo, Settings, settings

# (TFDS name, split) pairs, read one after the other.
Sources = tuple[tuple[str, str], ...]


def builder(name: str, data_dir: str | None, offline_build: bool) -> tfds.core.DatasetBuilder:
  """The TFDS builder `name`; prepared first when missing if `offline_build`."""
  out = tfds.builder(name, data_dir=data_dir)
  if offline_build and not out.is_prepared():
    shown = tqdm_utils._active  # pylint: disable=protected-access
    tfds.display_progress_bar(False)  # A second's work; no bars in the logs.
    try:
      out.download_and_prepare()
    finally:
      tfds.display_progress_bar(shown)
  return out


def read(sources: Sources, fields: Callable[[dict], dict], *, data_dir: str | None,
         offline_build: bool, shard: bool = True, drop_remainder: bool = True,
         decoders: dict | None = None) -> tf.data.Dataset:
  """The examples of `sources`, each parsed by `fields`, in a fixed order.

  Args:
    shard: read this host's share of each split (`tfds.split_for_jax_process`), else all.
    drop_remainder: the shares are equal (training) or cover every example (evaluation).
    decoders: TFDS decoders (e.g. to keep images encoded).
  """
  index, count = jax.process_index(), jax.process_count()
  ds = None
  for name, split in sources:
    tfds_builder = builder(name, data_dir, offline_build)
    if shard:
      split = tfds.split_for_jax_process(split, process_index=index, process_count=count,
                                         drop_remainder=drop_remainder)
    part = tfds_builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                                   read_config=tfds.ReadConfig(try_autocache=False))
    part = part.map(fields)
    ds = part if ds is None else ds.concatenate(part)
  return ds


def num_examples(sources: Sources, *, data_dir: str | None, offline_build: bool) -> int:
  """Examples in `sources` (all hosts), from the datasets' metadata when they have any."""
  total = 0
  for name, split in sources:
    tfds_builder = builder(name, data_dir, offline_build)
    if tfds_builder.info.splits:
      total += tfds_builder.info.splits[split].num_examples
    else:  # No recorded splits (mocked in tests): count by reading.
      total += stream.count(tfds_builder.as_dataset(split=split, shuffle_files=False))
  return total


def spec_kind(fields: Callable[[dict, object], dict], train_example, eval_example,
              padding_example) -> stream.Kind:
  """The `Kind` of a `DatasetSpec` dataset whose TFDS examples `fields(example, spec)` parses;
  its settings are `datasets.Settings`. Images stay encoded for `crop="inception"` (decoded
  with the crop window)."""

  def sources(s: Settings, train: bool) -> Sources:
    return ((s.spec.tfds_name, s.spec.train_split if train else s.spec.eval_split),)

  def read_spec(s: Settings, train: bool) -> tf.data.Dataset:
    decoders = ({"image": tfds.decode.SkipDecoding()} if s.spec.crop == "inception" else None)
    return read(sources(s, train), lambda ex: fields(ex, s.spec), data_dir=s.data_dir,
                offline_build=s.spec.offline_build, drop_remainder=train, decoders=decoders)

  def count(s: Settings, train: bool) -> int:
    return num_examples(sources(s, train), data_dir=s.data_dir,
                        offline_build=s.spec.offline_build)

  def info(s: Settings) -> DatasetInfo:
    return DatasetInfo(name=s.spec.name, num_classes=s.spec.num_classes,
                       image_shape=s.image_shape, num_train=count(s, True),
                       num_eval=count(s, False), mean=tuple(s.spec.mean), std=tuple(s.spec.std))

  def train_examples(s: Settings) -> tf.data.Dataset:
    ds = read_spec(s, train=True)
    return ds.cache() if s.spec.cache else ds

  def eval_examples(s: Settings) -> tuple[tf.data.Dataset, int]:
    return read_spec(s, train=False), count(s, False)

  return stream.Kind(settings=settings, info=info, train_examples=train_examples,
                     eval_examples=eval_examples, train_example=train_example,
                     eval_example=eval_example, padding_example=padding_example)
