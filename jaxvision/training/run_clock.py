"""A run's wall time across the invocations that trained it.

`workdir/elapsed.json` maps each checkpointed step to the seconds the run had taken to reach it
(compilation, training steps, periodic evaluations and checkpoints). A resumed run counts on from
its checkpoint's entry, so steps redone after a crash count once; a finished run reports the time
it trained, not the time of the re-evaluation that `fit` makes when it is called again. Workdirs
written before this record existed count from the invocation that resumed them.
"""

from __future__ import annotations

import json
import pathlib
import time

from jaxvision.training.workdir import write_json

ELAPSED_FILE = "elapsed.json"


class RunClock:
  """Seconds since the run's step 0, carried over from `workdir/elapsed.json` at `start_step`."""

  def __init__(self, workdir: str | pathlib.Path, start_step: int, *, write: bool = True):
    self.path = pathlib.Path(workdir) / ELAPSED_FILE
    self.write = write
    self._t0 = time.time()
    self._record = {s: t for s, t in read_elapsed(self.path).items() if s <= start_step}
    self._base = self._record[max(self._record)] if self._record else 0.0

  def now(self) -> float:
    """The run's seconds so far: the checkpoint's entry plus this invocation's time."""
    return self._base + time.time() - self._t0

  def mark(self, step: int) -> None:
    """Records the run's seconds at checkpointed `step` (written by the primary process)."""
    self._record[int(step)] = self.now()
    if self.write:
      write_json(self.path, {str(s): t for s, t in self._record.items()})

  def seconds(self, step: int) -> float:
    """The run's seconds at `step`: its recorded entry, else the time so far."""
    return self._record.get(int(step), self.now())


def read_elapsed(path: str | pathlib.Path) -> dict[int, float]:
  """{step: seconds} of an elapsed.json; {} if it is missing or unreadable."""
  try:
    raw = json.loads(pathlib.Path(path).read_text())
    return {int(s): float(t) for s, t in raw.items()}
  except (OSError, ValueError, AttributeError, TypeError):
    return {}
