"""ODE blocks under `jax.pmap`: equinox's closure-convert check compares shapes only.

JAX >= 0.9 runs `jax.pmap` through `shard_map`, where the same argument carries a manual-axis
sharding in one trace and none in another. equinox (<= 0.13.8) checks that a closure-converted
function is called with the shapes, dtypes *and shardings* it was converted with, so every
diffrax solve inside a pmapped step fails with "Closure-converted function called with
different dynamic arguments" (patrick-kidger/diffrax#765; the fix proposed upstream,
patrick-kidger/equinox#1261, likewise ignores sharding metadata). `shapes_only` wraps a function
so that, while it is traced, that check compares shapes and dtypes (what it guards), not
shardings.
Outside the wrapped trace equinox is untouched; where equinox lacks the private helper (fixed or
renamed upstream) the wrapper changes nothing.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import jax


def _shape_and_dtype(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


@contextlib.contextmanager
def _closure_check_without_shardings():
  try:
    from equinox import _ad
  except ImportError:  # no equinox, no ODE blocks
    yield
    return
  original = getattr(_ad, "_strip_weak_dtype", None)
  if original is None:
    yield
    return
  _ad._strip_weak_dtype = _shape_and_dtype
  try:
    yield
  finally:
    _ad._strip_weak_dtype = original


def shapes_only(fn: Callable) -> Callable:
  """`fn`, traced with equinox's closure-convert check on shapes and dtypes only."""

  @functools.wraps(fn)
  def traced(*args, **kwargs):
    with _closure_check_without_shardings():
      return fn(*args, **kwargs)

  return traced
