"""Input checks shared by the models: fail early, naming what was received and expected."""

import operator

import jax.numpy as jnp


def check_images(x, name: str = "x") -> None:
  """Raises unless `x` is a floating-point image batch [B, H, W, C]."""
  if x.ndim != 4:
    raise ValueError(f"{name}: expected images of rank 4 [B, H, W, C], got shape {tuple(x.shape)}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name}: expected a floating-point image batch, got dtype {x.dtype} "
                    "(convert and normalise images first)")


def check_positive_int(value, name: str) -> int:
  """`value` as an int; ValueError naming `name` unless it is an integer >= 1."""
  try:
    out = operator.index(value)
  except TypeError:
    out = 0
  if out < 1:
    raise ValueError(f"{name}: expected a positive int, got {value!r}")
  return out
