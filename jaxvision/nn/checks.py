"""Input checks shared by the models: fail early, naming what was received and expected."""

import jax.numpy as jnp


def check_images(x, name: str = "x") -> None:
  """Raises unless `x` is a floating-point image batch [B, H, W, C]."""
  if x.ndim != 4:
    raise ValueError(f"{name}: expected images of rank 4 [B, H, W, C], got shape {tuple(x.shape)}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name}: expected a floating-point image batch, got dtype {x.dtype} "
                    "(convert and normalise images first)")
