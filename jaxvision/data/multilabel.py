"""Multi-label classification datasets: images with image-level labels (which classes appear).

A multi-label dataset is a detection dataset (`jaxvision.data.detection`) read without its
boxes: an image's label vector is multi-hot over the object classes, 1 where at least one of its
objects has that class (difficult/crowd objects count). Batches: `image` float32 [B, H, W, C]
(normalised, the detection pipeline's augmentation in training), `labels` float32 [B, K], and in
evaluation `weight` [B] (0 for padding rows). Order, seeds and resumption are the detection
pipeline's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import ml_collections

from jaxvision.data import detection, stream
from jaxvision.losses.multilabel import multi_hot

# Multi-label name -> the detection dataset it reads.
SOURCES: dict[str, str] = {
    "shapes_multilabel": "shapes_detection",
    "shapes_multilabel/64": "shapes_detection/64",
    "voc_multilabel/2007": "voc/2007",
}


def is_multilabel(name: str) -> bool:
  return isinstance(name, str) and name in SOURCES


def settings(dataset_config: Any) -> detection.Settings:
  """The source's detection settings, its spec under the multi-label name."""
  if not is_multilabel(dataset_config.name):
    raise ValueError(f"dataset name: unknown multi-label dataset {dataset_config.name!r}; "
                     f"expected one of {sorted(SOURCES)}")
  c = ml_collections.ConfigDict(dict(dataset_config))
  c.name = SOURCES[dataset_config.name]
  s = detection.settings(c)
  return dataclasses.replace(s, spec=dataclasses.replace(s.spec, name=dataset_config.name))


def finish(batches: Iterator[stream.Batch], s: detection.Settings) -> Iterator[stream.Batch]:
  """{image, labels (multi-hot), weight (evaluation)} of the detection batches."""
  for b in detection.finish(batches, s):
    out = {k: b[k] for k in ("image", "weight") if k in b}
    out["labels"] = multi_hot(b["classes"], b["valid"], s.spec.num_classes)
    yield out


KIND = dataclasses.replace(detection.KIND, settings=settings, finish=finish)
