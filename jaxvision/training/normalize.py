"""Image normalisation on the device: raw pipeline images (uint8, or float32 in [0, 255]) to the
model's float32 input, bit for bit what the host pipeline computes (`jaxvision.data.augment.normalize`).

XLA rewrites a division by a constant or a broadcast scalar as a multiplication by a rounded
reciprocal; the divisors are broadcast to the image's shape behind an optimisation barrier so
that they stay true divisions, as in TensorFlow.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Stats = tuple[Sequence[float], Sequence[float]]


def normalize_images(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """`(x / 255 - mean) / std` per channel, in float32."""
  x = images.astype(jnp.float32)
  scale = jnp.full(x.shape, 255.0, jnp.float32)
  std = jnp.broadcast_to(jnp.asarray(std, jnp.float32), x.shape)
  scale, std = jax.lax.optimization_barrier((scale, std))
  return (x / scale - jnp.asarray(mean, jnp.float32)) / std

def with_normalized_images(batch: dict, stats: Stats | None) -> dict:
  """`batch` with its image normalised by `stats` = (mean, std); unchanged when None."""
  if stats is None:
    return batch
  return {**batch, "image": normalize_images(batch["image"], *stats)}
