"""Model registry: `create_model("resnet50", num_classes=10, **options)` and `list_models()`."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import flax.linen as nn
import jax.numpy as jnp

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], frozenset[str]]] = {}


def register_model(name: str, factory: Callable[..., nn.Module], options: Iterable[str]) -> None:
  """Registers `factory(**options) -> nn.Module` under `name`, accepting only `options`."""
  if name in _REGISTRY:
    raise ValueError(f"name: model {name!r} is already registered")
  _REGISTRY[name] = (factory, frozenset(options))


def module_options(module_cls: type[nn.Module], exclude: Iterable[str] = ()) -> frozenset[str]:
  """The dataclass fields of a Flax module a user may set (not parent/name, not `exclude`)."""
  skip = {"parent", "name", *exclude}
  return frozenset(f.name for f in dataclasses.fields(module_cls) if f.init and f.name not in skip)


def list_models() -> list[str]:
  """Names accepted by `create_model`, sorted."""
  return sorted(_REGISTRY)


def model_options(name: str) -> list[str]:
  """Keyword options accepted by `create_model(name, ...)`, sorted."""
  return sorted(_lookup(name)[1])


def create_model(name: str, **options) -> nn.Module:
  """Builds the registered model `name` with keyword `options` (e.g. num_classes, step_size).

  A `dtype` option may be named by a string, as in a config file or on the command line
  ("bfloat16" or "bf16", "float16", "float32"): the compute dtype; parameters, BatchNorm
  statistics and outputs stay float32.
  """
  factory, allowed = _lookup(name)
  unknown = sorted(set(options) - allowed)
  if unknown:
    raise ValueError(f"options: model {name!r} got unknown option(s) {unknown}; "
                     f"expected some of {sorted(allowed)}")
  if isinstance(options.get("dtype"), str):
    options = {**options, "dtype": compute_dtype(options["dtype"])}
  return factory(**options)


_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def compute_dtype(name: str) -> jnp.dtype:
  """The floating-point dtype named `name` ("bfloat16", "bf16", "float16", "float32", ...)."""
  try:
    dtype = jnp.dtype(_DTYPE_ALIASES.get(name, name))
  except TypeError:
    dtype = None
  if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"dtype: expected a floating-point dtype name such as 'bfloat16', 'float16' "
                     f"or 'float32', got {name!r}")
  return dtype


def _lookup(name: str):
  if name not in _REGISTRY:
    raise ValueError(f"name: unknown model {name!r}; expected one of {list_models()}")
  return _REGISTRY[name]
