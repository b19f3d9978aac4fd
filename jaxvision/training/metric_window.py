"""Train metrics kept on the devices between the loop's sync points.

The loop adds each step's metrics (device arrays; nothing waits) and fetches them only at log,
eval and checkpoint steps: one transfer for many steps, so the host never stalls the
dispatch of the next step. A fetch checks every step's loss, so a non-finite loss is found
before anything is saved, with the exact step it appeared at.
"""

from __future__ import annotations

import math

import jax
import numpy as np


class MetricWindow:
  """Per-step metrics since the last log step; `check()` fetches, `mean()` averages."""

  def __init__(self):
    self._pending: list[tuple[int, dict]] = []  # (step, device metrics) not fetched yet
    self._fetched: list[dict] = []  # host metrics since the last `mean()`

  def add(self, step: int, metrics: dict) -> None:
    self._pending.append((step, metrics))

  def check(self) -> tuple[int, float] | None:
    """Fetches the pending steps' metrics; returns (step, loss) of the first non-finite loss
    among them, or None when all are finite."""
    if not self._pending:
      return None
    steps = [s for s, _ in self._pending]
    host = jax.device_get([m for _, m in self._pending])
    self._pending = []
    for step, m in zip(steps, host):
      loss = float(m["loss"])
      if not math.isfinite(loss):
        return step, loss
    self._fetched.extend(host)
    return None

  def mean(self) -> dict:
    """The mean of each fetched metric over the steps since the last call (then cleared)."""
    rows, self._fetched = self._fetched, []
    if not rows:
      return {}
    return {k: float(np.mean([float(r[k]) for r in rows])) for k in rows[0]}
