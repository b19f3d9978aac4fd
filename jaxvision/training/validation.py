"""Checks of a batch against what the model was built for, on the host, before any compute."""

from __future__ import annotations

import numpy as np


def check_keys(batch: dict, keys) -> None:
  """Raises ValueError unless `batch` holds every one of `keys`."""
  missing = [k for k in keys if k not in batch]
  if missing:
    raise ValueError(f"batch: missing {missing}; expected keys {list(keys)}, got {sorted(batch)}")


def check_image(batch: dict, image_shape) -> np.ndarray:
  """`batch['image']` as a float [B, H, W, C] array with the model's channels, or an error."""
  image = np.asarray(batch["image"])
  if image.ndim != 4:
    raise ValueError(f"batch['image']: expected rank 4 [B, H, W, C], got shape {image.shape}")
  if not np.issubdtype(image.dtype, np.floating):
    raise TypeError(f"batch['image']: expected a floating-point dtype, got {image.dtype}")
  if image.shape[-1] != image_shape[-1]:
    raise ValueError(f"batch['image']: expected {image_shape[-1]} channels (shape [B, "
                     f"{', '.join(map(str, image_shape))}]), got shape {image.shape}")
  return image


def check_batch(batch: dict, *, image_shape: tuple[int, int, int], num_classes: int) -> None:
  """Raises ValueError/TypeError naming the field, what it holds and what was expected."""
  check_keys(batch, ("image", "label"))
  image, label = check_image(batch, image_shape), np.asarray(batch["label"])
  if label.shape != image.shape[:1]:
    raise ValueError(f"batch['label']: expected shape ({image.shape[0]},), got {label.shape}")
  if not np.issubdtype(label.dtype, np.integer):
    raise TypeError(f"batch['label']: expected integer class ids, got dtype {label.dtype}")
  lo, hi = int(label.min()), int(label.max())
  if lo < 0 or hi >= num_classes:
    raise ValueError(f"batch['label']: expected class ids in [0, {num_classes}), got values in "
                     f"[{lo}, {hi}]")
