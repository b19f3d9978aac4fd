"""TFDS input pipelines, augmentations and offline dataset builders.

The only package of jaxvision that imports TensorFlow, and only when a pipeline is used: the
names below load their modules on first access (PEP 562), so `jaxvision.data.config` and
`jaxvision.data.datasets` import without TensorFlow. Modules that use TFDS import
`tfds_offline` (no network, quiet CPU-only TensorFlow) and `builders` (the offline builders)
first.
"""

import importlib

# Public name -> the module of this package that defines it.
_LAZY = {
    "DATASETS": "datasets",
    "DatasetInfo": "datasets",
    "DatasetSpec": "datasets",
    "get_spec": "datasets",
    "dataset_info": "pipeline",
    "eval_batches": "pipeline",
    "train_batches": "pipeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
  if name not in _LAZY:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
  globals()[name] = value  # later look-ups skip this function
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
