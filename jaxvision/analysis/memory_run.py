"""Runs on batches a study holds in memory, trained by fit's loop.

`build_memory_run` builds the run `fit` would (jaxvision.training.run.build_run: model, task,
optimizer, the shared data-parallel train step, checkpointer, metric writer) in a fresh workdir,
and `fit_memory_run` trains it with `fit_run`; only the batches differ: the study's
`train_source(start_step)` yields the training batches (as the pipeline, best a pure function of
the step) and `eval_source(batch_size)` the evaluation batches (`padded_batches`). Both hold raw images
(uint8, or float32 in [0, 255]), as the pipeline's `normalize=False` batches: the run's steps
normalise them on the device with the dataset's statistics.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import time
from typing import Callable, Iterable, Iterator

import numpy as np

from jaxvision.training.finetune import load_pretrained
from jaxvision.training.fit import fit_run
from jaxvision.training.run import Run, build_run
from jaxvision.training.train_state import TrainState


@dataclasses.dataclass
class MemoryRun(Run):
  """A built run whose training and evaluation batches come from the study; `eval_seconds`
  adds up the time spent evaluating."""

  train_source: Callable[[int], Iterator[dict]] | None = None  # start step -> batches
  eval_source: Callable[[int], Iterable[dict]] | None = None  # eval batch size -> batches
  eval_seconds: float = 0.0

  def train_batches(self) -> Iterator[dict]:
    return iter(self.train_source(self.start_step))

  def eval_batches(self, *, normalize: bool = True) -> Iterator[dict]:
    mean, std = (np.asarray(v, np.float32) for v in (self.info.mean, self.info.std))
    for batch in self.eval_source(self.eval_batch_size):
      if normalize:
        batch = {**batch, "image": (np.asarray(batch["image"], np.float32) / 255 - mean) / std}
      yield batch

  def evaluate(self, state) -> dict:
    start = time.perf_counter()
    try:
      return super().evaluate(state)
    finally:
      self.eval_seconds += time.perf_counter() - start


def build_memory_run(config, workdir, *, train_source, eval_source, model=None,
                     num_classes: int | None = None, variables: dict | None = None) -> MemoryRun:
  """`build_run(config, workdir, model=model, num_classes=num_classes)` in `workdir` emptied
  first, on the given batches. `variables`: {"params", "batch_stats"} to start from instead of
  the random initialisation."""
  workdir = pathlib.Path(workdir)
  shutil.rmtree(workdir, ignore_errors=True)  # a fresh run: the study times it from step 0
  run = build_run(config, workdir, model=model, num_classes=num_classes)
  fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(Run)}
  if variables is not None:
    state = TrainState.create(apply_fn=run.model.apply, params=variables["params"],
                              batch_stats=variables.get("batch_stats", {}), tx=run.tx)
    fields["state"] = run.dp.put_state(state)
  return MemoryRun(**fields, train_source=train_source, eval_source=eval_source)


def fit_memory_run(run: MemoryRun, *, progress: bool = True) -> tuple[dict, dict]:
  """Trains `run` with fit's loop; (fit's summary with `train_seconds`, its wall time less
  evaluation, and the final variables {"params", "batch_stats"} from its last checkpoint)."""
  summary = fit_run(run, progress=progress)
  summary["train_seconds"] = summary["seconds"] - run.eval_seconds
  return summary, load_pretrained(run.workdir, run.config.model.name)


def padded_batches(arrays: dict, batch_size: int) -> Iterator[dict]:
  """`arrays` (each [N, ...]) in batches of `batch_size` rows with `weight` (1.0; 0.0 on the
  rows that pad the last batch, copies of its first row), as the pipeline's eval batches."""
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    index = np.arange(start, min(start + batch_size, n))
    rows = np.concatenate([index, np.full(batch_size - len(index), start)])
    batch = {k: np.asarray(v)[rows] for k, v in arrays.items()}
    batch["weight"] = (np.arange(batch_size) < len(index)).astype(np.float32)
    yield batch
