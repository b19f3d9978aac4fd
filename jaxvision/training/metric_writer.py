"""Metrics to `workdir/metrics.jsonl` (one JSON object a line) and TensorBoard event files."""

from __future__ import annotations

import json
import pathlib

import jax

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Writes `{"step", "split", **scalars}` rows; TensorBoard tags are `split/name`.

  Metrics are global (the same on every process of a multi-host run), so only process 0
  writes; elsewhere the writer does nothing.
  """

  def __init__(self, workdir: str | pathlib.Path):
    self.path = pathlib.Path(workdir) / METRICS_FILE
    self.active = jax.process_index() == 0
    if self.active:
      from tensorboardX import SummaryWriter  # imports torch: only where it is used
      self._file = self.path.open("a")
      self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

  def write(self, step: int, split: str, scalars: dict) -> None:
    if not self.active:
      return
    row = {"step": int(step), "split": split, **{k: float(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def close(self) -> None:
    if not self.active:
      return
    self._file.close()
    self._tb.close()


def read_metrics(path: str | pathlib.Path) -> list[dict]:
  """Rows of a metrics.jsonl file."""
  return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
