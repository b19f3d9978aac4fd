"""Multi-label classification datasets: images with image-level labels (which classes appear).

A multi-label dataset is a detection dataset (`jaxvision.data.detection`) read without its
boxes: an image's label vector is multi-hot over the object classes, 1 where at least one of its
objects has that class (difficult/crowd objects count). Batches: `image` float32 [B, H, W, C]
(normalised, the detection pipeline's augmentation in training), `labels` float32 [B, K], and in
evaluation `weight` [B] (0 for padding rows). Order, seeds and resumption are the detection
pipeline's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ml_collections

from jaxvision.data import detection
from jaxvision.data.pipeline import DatasetInfo
from jaxvision.losses.multilabel import multi_hot

# Multi-label name -> the detection dataset it reads.
SOURCES: dict[str, str] = {
    "shapes_multilabel": "shapes_detection",
    "shapes_multilabel/64": "shapes_detection/64",
    "voc_multilabel/2007": "voc/2007",
}


def is_multilabel(name: str) -> bool:
  return isinstance(name, str) and name in SOURCES


def _source(dataset_config: Any) -> ml_collections.ConfigDict:
  """The config with the name of the detection dataset it reads."""
  if not is_multilabel(dataset_config.name):
    raise ValueError(f"dataset name: unknown multi-label dataset {dataset_config.name!r}; "
                     f"expected one of {sorted(SOURCES)}")
  c = ml_collections.ConfigDict(dict(dataset_config))
  c.name = SOURCES[dataset_config.name]
  return c


def _labelled(batches, num_classes: int, keep: tuple[str, ...]) -> Iterator[dict]:
  for b in batches:
    out = {k: b[k] for k in keep if k in b}
    out["labels"] = multi_hot(b["classes"], b["valid"], num_classes)
    yield out


def dataset_info(dataset_config: Any) -> DatasetInfo:
  """The source's `DatasetInfo` under the multi-label name."""
  info = detection.dataset_info(_source(dataset_config))
  return DatasetInfo(name=dataset_config.name, num_classes=info.num_classes,
                     image_shape=info.image_shape, num_train=info.num_train,
                     num_eval=info.num_eval)


def train_batches(dataset_config: Any, global_batch_size: int, seed: int,
                  start_step: int = 0) -> Iterator[dict]:
  """{image, labels} training batches (see the module doc); resumable as the source's."""
  source = _source(dataset_config)
  k = detection.get_spec(source.name).num_classes
  return _labelled(detection.train_batches(source, global_batch_size, seed, start_step), k,
                   ("image",))


def eval_batches(dataset_config: Any, global_batch_size: int) -> Iterator[dict]:
  """{image, labels, weight} evaluation batches, padded as the source's."""
  source = _source(dataset_config)
  k = detection.get_spec(source.name).num_classes
  return _labelled(detection.eval_batches(source, global_batch_size), k, ("image", "weight"))
