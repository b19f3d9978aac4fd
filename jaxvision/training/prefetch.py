"""Double buffering: the next batches are placed on the devices while the current step runs."""

from __future__ import annotations

import collections
import itertools
from typing import Callable, Iterable, Iterator


def prefetch_to_device(batches: Iterable, put: Callable, size: int = 2) -> Iterator:
  """Yields `put(batch)` for each of `batches`, keeping `size` of them in flight.

  `put` (e.g. `data_parallel(...).put_batch`) checks a host batch and starts its transfer
  (asynchronous in JAX); the next host batch is read and put while the step on the current one
  runs, as flax's `prefetch_to_device` does.
  """
  if size < 1:
    raise ValueError(f"size: got {size!r}; expected an int >= 1")
  batches = iter(batches)
  queue = collections.deque(put(b) for b in itertools.islice(batches, size))
  while queue:
    yield queue.popleft()
    queue.extend(put(b) for b in itertools.islice(batches, 1))
