"""TFDS input pipelines, augmentations and offline dataset builders.

The only package of jaxvision that imports TensorFlow.
"""

# Side effects first: no network for TFDS, quiet CPU-only TensorFlow.
from jaxvision.data import tfds_offline  # noqa: F401  isort: skip
# Registers the offline builders (`digits`) with TFDS.
from jaxvision.data import builders  # noqa: F401  isort: skip
from jaxvision.data.datasets import DATASETS, DatasetSpec, get_spec
from jaxvision.data.pipeline import (
    DatasetInfo, dataset_info, eval_batches, train_batches)

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetSpec",
    "dataset_info",
    "eval_batches",
    "get_spec",
    "train_batches",
]
