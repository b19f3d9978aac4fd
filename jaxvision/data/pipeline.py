"""Input pipelines: deterministic, resumable, per-host sharded batches of numpy arrays.

The entry points for every dataset: the dataset's kind picks how its examples are parsed and
transformed (`KINDS`), and the one stream of `jaxvision.data.stream` orders, seeds, batches and
pads them. Training order is a pure function of (seed, epoch) and augmentation of (seed, global
example position), so `train_batches(..., start_step=k)` yields exactly batches k, k+1, ... of a
run started at step 0, in any process.
"""

from collections.abc import Iterator
from typing import Any

from jaxvision.data import classification, detection, multilabel, segmentation, stream
from jaxvision.data.datasets import DATASETS, DatasetInfo, get_spec

__all__ = ["KINDS", "DatasetInfo", "dataset_info", "eval_batches", "kind_of", "train_batches"]

Batch = stream.Batch

# Dataset kind -> how its examples are read and transformed.
KINDS: dict[str, stream.Kind] = {
    "classification": classification.KIND,
    "segmentation": segmentation.KIND,
    "detection": detection.KIND,
    "multilabel": multilabel.KIND,
}


def kind_of(name: str) -> str:
  """The kind of dataset `name` (a key of `KINDS`); ValueError for an unknown name."""
  if detection.is_detection(name):
    return "detection"
  if multilabel.is_multilabel(name):
    return "multilabel"
  if isinstance(name, str) and name in DATASETS:
    return get_spec(name).kind
  known = sorted([*DATASETS, *detection.DATASETS, *multilabel.SOURCES])
  raise ValueError(f"dataset_config.name: got {name!r}; expected one of {known}")


def dataset_info(dataset_config: Any) -> DatasetInfo:
  """Returns the `DatasetInfo` of the dataset `dataset_config` describes."""
  return stream.dataset_info(KINDS[kind_of(dataset_config.name)], dataset_config)


def train_batches(dataset_config: Any, global_batch_size: int, seed: int,
                  start_step: int = 0, *, normalize: bool = True) -> Iterator[Batch]:
  """Infinite iterator of augmented training batches for this host.

  Args:
    dataset_config: `name`, `data_dir`, `image_size`, `crop_padding`, `flip`,
      `shuffle_buffer`, and for detection `max_boxes`, `drop_extra_boxes`
      (see `jaxvision.data.config.default_dataset_config`).
    global_batch_size: batch size over all hosts; each host yields
      `global_batch_size // jax.process_count()` examples per batch.
    seed: fixes the shuffle order of every epoch and every augmentation.
    start_step: index of the first batch; resuming at step k yields batches
      k, k+1, ... of the run that started at 0 (skipping whole epochs cheaply).
    normalize: False leaves the images unnormalised for the device to normalise with
      `dataset_info(...).mean/std`: uint8 where the augmentation kept integer pixels (crop,
      pad, flip), float32 in [0, 255] where it resized or jittered colours.

  Returns:
    Iterator of {"image": float32 [B, H, W, C] (normalised), "label": int32 [B]}
    (segmentation: "mask" int32 [B, H, W], 255 = ignore, instead of "label";
    detection: "boxes", "classes", "valid" (`jaxvision.data.detection`);
    multi-label: "labels" float32 [B, K]).
  """
  kind = KINDS[kind_of(dataset_config.name)]
  return stream.train_batches(kind, dataset_config, global_batch_size, seed, start_step,
                              normalize=normalize)


def eval_batches(dataset_config: Any, global_batch_size: int, *,
                 normalize: bool = True) -> Iterator[Batch]:
  """One pass over this host's part of the eval split, in full-size batches.

  The last batches are padded with rows of weight 0; every host yields the same
  number of batches, so collectives across hosts stay in step. `normalize`: as in
  `train_batches`.

  Returns:
    Iterator of the training batches' fields (detection adds "difficult" and
    "image_size") and "weight": float32 [B], 1 for real examples, 0 for padding
    (segmentation masks are all 255 in padding rows, detection has no valid
    boxes there).
  """
  return stream.eval_batches(KINDS[kind_of(dataset_config.name)], dataset_config,
                             global_batch_size, normalize=normalize)
