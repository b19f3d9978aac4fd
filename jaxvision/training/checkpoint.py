"""Orbax checkpoints of a run: the last `keep` states, the best one by an eval metric, and a
record of what the run trains so that a workdir is never resumed with another model."""

from __future__ import annotations

import json
import os
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvision.training.train_state import TrainState, checkpoint_tree, from_checkpoint_tree

RUN_FILE = "run.json"


def _barriers(name: str) -> ocp.options.MultiprocessingOptions:
  return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name)


class Checkpointer:
  """Saves to `workdir/checkpoints` (last `keep`) and `workdir/best` (the best by `best_metric`).

  Writes are atomic (orbax finalises a step only when complete), so a run killed at any
  point resumes from its last complete checkpoint.
  """

  def __init__(self, workdir: str | pathlib.Path, *, keep: int = 3, best_metric: str = "accuracy",
               best_mode: str = "max"):
    self.workdir = pathlib.Path(workdir).absolute()
    self.best_metric, self.best_mode = best_metric, best_mode
    # Multi-host: every process calls save/restore; process 0 writes. The two managers need
    # their own barrier names, or their concurrent async saves collide.
    self.latest = ocp.CheckpointManager(
        self.workdir / "checkpoints", options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, multiprocessing_options=_barriers("latest")))
    self.best = ocp.CheckpointManager(
        self.workdir / "best", options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode=best_mode,
            multiprocessing_options=_barriers("best")))

  def check_run(self, run: dict) -> None:
    """Records `run` (model, dataset, ...) in the workdir, or raises if it holds another run."""
    path = self.workdir / RUN_FILE
    run = json.loads(json.dumps(run))
    if path.exists():
      held = json.loads(path.read_text())
      diff = {k: (held.get(k), run.get(k)) for k in sorted(set(held) | set(run))
              if held.get(k) != run.get(k)}
      if diff:
        lines = "; ".join(f"{k}: workdir has {a!r}, this run has {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"workdir: {self.workdir} holds a checkpoint of another run ({lines}); "
                         "use a new --workdir or delete it")
    elif jax.process_index() == 0:  # atomically: other processes may be reading it
      tmp = path.with_name(f".{RUN_FILE}.tmp")
      tmp.write_text(json.dumps(run, indent=2, sort_keys=True))
      os.replace(tmp, path)

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def restore_latest(self, state: TrainState) -> TrainState:
    """`state` restored from the latest checkpoint, or unchanged if there is none."""
    step = self.latest.latest_step()
    if step is None:
      return state
    target = jax.tree.map(np.asarray, checkpoint_tree(state))
    tree = self.latest.restore(step, args=ocp.args.StandardRestore(target))
    return from_checkpoint_tree(state, tree)

  def save(self, state: TrainState, metrics: dict | None = None) -> None:
    """Saves `state` (on the host) at its step; also as the best if `metrics` beat the best."""
    step = int(state.step)
    tree = jax.tree.map(np.asarray, checkpoint_tree(state))
    if self.latest.latest_step() != step:
      self.latest.save(step, args=ocp.args.StandardSave(tree))
    if metrics is not None and self.best_metric in metrics and self._improves(metrics):
      self.best.save(step, args=ocp.args.StandardSave(tree),
                     metrics={k: float(v) for k, v in metrics.items()})

  def best_metrics(self) -> tuple[int | None, dict | None]:
    """(step, metrics) of the best checkpoint so far."""
    step = self.best.best_step()
    if step is None:
      return None, None
    self.best.wait_until_finished()
    return step, self.best.metrics(step)

  def _improves(self, metrics: dict) -> bool:
    _, best = self.best_metrics()
    if best is None:
      return True
    new, old = float(metrics[self.best_metric]), float(best[self.best_metric])
    return new > old if self.best_mode == "max" else new < old

  def close(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()
    self.latest.close()
    self.best.close()
