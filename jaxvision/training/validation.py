"""Checks of a batch against what the model was built for, on the host, before any compute."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

# Keys that hold integer class ids when a batch has them ('mask': 255 marks ignored pixels;
# 'classes': detection, counted where 'valid').
CLASS_ID_KEYS = ("label", "mask", "classes")


def check_keys(batch: dict, keys) -> None:
  """Raises ValueError unless `batch` holds every one of `keys`."""
  if not isinstance(batch, Mapping):
    raise TypeError(f"batch: got {type(batch).__name__}; expected a dict of arrays")
  missing = [k for k in keys if k not in batch]
  if missing:
    raise ValueError(f"batch: missing {missing}; expected keys {list(keys)}, got {sorted(batch)}")


def _array(x):
  """`x` as an array without moving it: numpy and jax arrays as they are."""
  return x if isinstance(x, (np.ndarray, jax.Array)) else np.asarray(x)


def check_image(batch: dict, image_shape=None):
  """`batch['image']` if it is a float or uint8 (raw pixels, normalised by the step) [B, H, W, C]
  array with the model's channels (those of `image_shape` [H, W, C]; None: any), else an
  error. Reads only its shape and dtype."""
  image = _array(batch["image"])
  if image.ndim != 4:
    raise ValueError(f"batch['image']: expected rank 4 [B, H, W, C], got shape {image.shape}")
  if not (np.issubdtype(image.dtype, np.floating) or image.dtype == np.uint8):
    raise TypeError(f"batch['image']: expected a floating-point or uint8 dtype, got {image.dtype}")
  if image_shape is not None and image.shape[-1] != image_shape[-1]:
    raise ValueError(f"batch['image']: expected {image_shape[-1]} channels (shape [B, "
                     f"{', '.join(map(str, image_shape))}]), got shape {image.shape}")
  return image


def check_class_ids(name: str, ids, num_classes: int | None = None, *, valid=None,
                    values: bool = True) -> None:
  """Raises unless `ids` (`batch[name]`) are integers in [0, num_classes) (>= 0 when
  `num_classes` is None), counting only entries where `valid`. `values=False` checks the dtype
  only (device arrays stay where they are)."""
  if not np.issubdtype(ids.dtype, np.integer):
    raise TypeError(f"batch[{name!r}]: expected integer class ids, got dtype {ids.dtype}")
  if not values:
    return
  ids = np.asarray(ids)
  if valid is not None:
    ids = ids[np.asarray(valid, bool)]
  if not ids.size:
    return
  lo, hi = int(ids.min()), int(ids.max())
  if lo < 0 or (num_classes is not None and hi >= num_classes):
    bound = ">= 0" if num_classes is None else f"in [0, {num_classes})"
    raise ValueError(f"batch[{name!r}]: expected class ids {bound}, got values in [{lo}, {hi}]")


def check_batch(batch: dict, *, image_shape: tuple[int, int, int], num_classes: int) -> None:
  """Raises ValueError/TypeError naming the field, what it holds and what was expected."""
  check_keys(batch, ("image", "label"))
  image, label = check_image(batch, image_shape), np.asarray(batch["label"])
  if label.shape != image.shape[:1]:
    raise ValueError(f"batch['label']: expected shape ({image.shape[0]},), got {label.shape}")
  check_class_ids("label", label, num_classes)


def check_step_batch(task, batch: dict, *, image_shape=None,
                     num_classes: int | None = None) -> None:
  """The checks of a host batch before a public data-parallel step (`parallel.data_parallel`).

  Given `num_classes`, the task's own `check_batch` (what `fit` runs), against `image_shape`
  (None: the batch's own). Without it, what needs no class count: the task's keys, the image's
  rank, dtype (and channels, given `image_shape`), and integer, non-negative class ids in
  'label', 'mask' and 'classes' (where 'valid'), each with the batch's leading size. Values
  (min/max) are read from host arrays only: a batch holding jax arrays gets the shape and dtype
  checks, with no transfer from the device.
  """
  check_keys(batch, task.batch_keys)
  image = check_image(batch, image_shape)
  on_host = not any(isinstance(v, jax.Array) for v in batch.values())
  if on_host and num_classes is not None:
    task.check_batch(batch, image_shape=tuple(image_shape or image.shape[1:]),
                     num_classes=num_classes)
    return
  for key in CLASS_ID_KEYS:
    if key in batch:
      ids = _array(batch[key])
      if ids.shape[:1] != image.shape[:1]:
        raise ValueError(f"batch[{key!r}]: expected the batch's {image.shape[0]} rows first, "
                         f"got shape {ids.shape}")
      valid = batch.get("valid") if key == "classes" else None
      check_class_ids(key, ids, valid=valid, values=on_host)
