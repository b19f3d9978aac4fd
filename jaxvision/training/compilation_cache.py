"""XLA's persistent compilation cache, so a second run of the same program skips compiling."""

from __future__ import annotations

import os

import jax

ENV_VAR = "JAXVISION_COMPILATION_CACHE"


def enable_compilation_cache(min_compile_time_secs: float = 1.0) -> str | None:
  """Caches compiled programs in $JAXVISION_COMPILATION_CACHE (default ~/.cache/jaxvision/xla;
  empty: off); returns the folder, or None when turned off."""
  path = os.environ.get(ENV_VAR, os.path.join(os.path.expanduser("~"), ".cache", "jaxvision", "xla"))
  if not path:
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_secs)
  return path
