"""The backbone of a detector or segmenter: a registry classifier built by name, whose
`__call__(x, *, train, features=True)` returns its feature maps, shallow to deep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.registry import create_model


def backbone_options(options: Mapping | None) -> dict:
  """`backbone_options` as a plain dict: None -> {}, a ConfigDict (from a training config) or
  any mapping -> dict."""
  if options is None:
    return {}
  if hasattr(options, "to_dict"):  # ml_collections.ConfigDict
    options = options.to_dict()
  if not isinstance(options, Mapping):
    raise ValueError(f"backbone_options: got {options!r}; expected a dict of the backbone's "
                     "options")
  return dict(options)


def make_backbone(name: str, options: Mapping | None = None, *, num_classes: int,
                  axis_name: str | None = None, dtype: Any = jnp.float32) -> nn.Module:
  """The registered model `name` built with `options` (`backbone_options`), the detector's
  `num_classes`, `axis_name` and `dtype`."""
  return create_model(name, num_classes=num_classes, axis_name=axis_name, dtype=dtype,
                      **backbone_options(options))
