"""Orbax checkpoints of a run: the last `keep` states plus the best one by an eval metric, in one
manager, and the guard (run.json) that keeps a workdir to one run."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvision.training.train_state import TrainState, checkpoint_tree, from_checkpoint_tree
from jaxvision.training.workdir import CHECKPOINTS, lock_workdir, write_json

RUN_FILE = "run.json"
LEGACY_BEST = "best"   # workdirs written before the single manager kept the best here
CORRUPT = "corrupt"    # steps that do not restore are moved here, never deleted
METRICS = "metrics"    # orbax's item of a step's metrics
JSON_FILES = ("_CHECKPOINT_METADATA", f"{METRICS}/{METRICS}")  # read when the manager opens

log = logging.getLogger("jaxvision")
_BARRIERS = itertools.count()  # every process creates barriers in the same order


class Checkpointer:
  """Saves a run's states to `workdir/checkpoints`, one orbax step per save.

  Each step holds the state and the eval metrics it was saved with, and orbax finalises it
  atomically. One preservation policy keeps the last `keep` steps and the best step by
  `best_metric` (`best_mode` "max" or "min"; a later step must do better to replace it), so the
  best is no separate write a kill could lose: an old best is deleted only after a better step
  is complete.

  `restore_latest` restores the newest step that restores. A step that does not (a truncated
  or zeroed data file, a missing or garbled metadata file, a missing folder) is moved to
  `workdir/corrupt/` with one warning line naming the step and why.

  Workdirs from before this layout (the last states in checkpoints/, the best in best/) resume
  from checkpoints/ as they did; their best/ stays as it was (loadable with `model.pretrained`)
  and still counts in `best_metrics`.

  The workdir is locked (workdir.lock_workdir) until `close()`; `lock=False` skips it, for
  reading a workdir another process may hold. Multi-host: every process calls every method;
  process 0 writes.
  """

  def __init__(self, workdir: str | pathlib.Path, *, keep: int = 3, best_metric: str = "accuracy",
               best_mode: str = "max", lock: bool = True):
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
      raise ValueError(f"config.keep_checkpoints: got {keep!r}; expected an integer >= 1 (the "
                       "last checkpoints kept, besides the best)")
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode: got {best_mode!r}; expected 'max' or 'min'")
    self.workdir = pathlib.Path(workdir).absolute()
    self.best_metric, self.best_mode = best_metric, best_mode
    # Not a bound method: the manager keeps it, and must not keep `self` (and its lock) alive.
    self._score = functools.partial(_score, metric=best_metric, mode=best_mode)
    self._run = None  # run.json to write once the workdir has a checkpoint
    self._lock = lock_workdir(self.workdir) if lock else None
    try:
      self._set_aside_unreadable_json()
      options = ocp.CheckpointManagerOptions(
          create=True, preservation_policy=_KeepLastAndBest(keep, self._score),
          best_fn=self._score, best_mode="max",  # with a best_fn, orbax saves the metrics
          multiprocessing_options=ocp.options.MultiprocessingOptions(
              barrier_sync_key_prefix="jaxvision"))
      # One unnamed item, fixed here: orbax would otherwise guess from the first step it reads.
      self.manager = ocp.CheckpointManager(self.workdir / CHECKPOINTS, options=options,
                                           item_handlers=ocp.StandardCheckpointHandler())
    except BaseException:
      self._release()
      raise

  def check_run(self, run: dict) -> None:
    """Raises if the workdir holds another run than `run` (model, dataset, ...); else records
    `run` in run.json once the workdir has a checkpoint (so a run that fails at start-up does
    not block the next command)."""
    path = self.workdir / RUN_FILE
    run = json.loads(json.dumps(run))
    if path.exists():
      try:
        held = json.loads(path.read_text())
      except ValueError as e:
        raise ValueError(f"workdir: {path} does not parse ({e}); delete it if {self.workdir} "
                         "holds this run") from None
      diff = {k: (held.get(k), run.get(k)) for k in sorted(set(held) | set(run))
              if held.get(k) != run.get(k)}
      if diff:
        lines = "; ".join(f"{k}: workdir has {a!r}, this run has {b!r}"
                          for k, (a, b) in diff.items())
        raise ValueError(f"workdir: {self.workdir} holds a checkpoint of another run ({lines}); "
                         "use a new --workdir or delete it")
      return
    self._run = run
    if self.latest_step() is not None:
      self._write_run()

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore_latest(self, state: TrainState) -> TrainState:
    """`state` restored from the newest checkpoint that restores, or unchanged if there is none.

    Newer steps that do not restore are moved aside with one warning each; if none restores,
    raises (moving nothing) with each step and why.
    """
    target = jax.tree.map(np.asarray, checkpoint_tree(state))
    failed = []
    for step in reversed(self.manager.all_steps()):
      try:
        tree = self.manager.restore(step, args=ocp.args.StandardRestore(target))
        if int(tree["step"]) != step:
          raise ValueError(f"it holds the state of step {int(tree['step'])}")
      except Exception as e:  # pylint: disable=broad-except
        failed.append((step, _why(self.workdir / CHECKPOINTS / str(step), e)))
        continue
      for bad, why in failed:
        self._set_aside(bad, f"{why}; resuming from step {step}")
      if failed:
        _sync("restore_set_aside")
        self.manager.reload()
      return from_checkpoint_tree(state, tree)
    if failed:
      steps = "; ".join(f"step {s}: {why}" for s, why in failed)
      raise RuntimeError(f"checkpoint: no checkpoint in {self.workdir / CHECKPOINTS} restores "
                         f"({steps}); move them away to train from scratch")
    return state

  def save(self, state: TrainState, metrics: dict | None = None) -> None:
    """Saves `state` (on the host) at its step with its eval `metrics` (None: not evaluated);
    a no-op if that step is saved already."""
    step = int(state.step)
    if self.manager.latest_step() == step:
      return
    tree = jax.tree.map(np.asarray, checkpoint_tree(state))
    # {} rather than None: orbax warns at every save without metrics.
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    self.manager.save(step, args=ocp.args.StandardSave(tree), metrics=metrics)
    if self._run is not None:  # the first checkpoint: the guard file may go in now
      self.manager.wait_until_finished()
      self._write_run()

  def best_metrics(self) -> tuple[int | None, dict | None]:
    """(step, metrics) of the best checkpoint so far (a legacy best/ one included), or
    (None, None) if no saved step has a finite `best_metric`."""
    self.manager.wait_until_finished()
    found = _legacy_best(self.workdir / LEGACY_BEST)  # older than any step in checkpoints/
    found += [(s, self.manager.metrics(s)) for s in self.manager.all_steps()]
    best = _best([m for _, m in found], self._score)
    return (None, None) if best is None else found[best]

  def close(self) -> None:
    try:
      self.manager.wait_until_finished()
      self.manager.close()
    finally:
      self._release()

  def _write_run(self) -> None:
    if jax.process_index() == 0:  # atomically: other processes may be reading it
      write_json(self.workdir / RUN_FILE, self._run)
    self._run = None

  def _release(self) -> None:
    if self._lock is not None:
      self._lock.release()
      self._lock = None

  def _set_aside_unreadable_json(self) -> None:
    """Moves aside steps whose small JSON files do not parse: orbax reads them on opening."""
    d = self.workdir / CHECKPOINTS
    for step_dir in sorted(d.iterdir() if d.is_dir() else []):
      if step_dir.name.isdigit():
        for name in JSON_FILES:
          if (step_dir / name).is_file() and not _parses(step_dir / name):
            self._set_aside(int(step_dir.name), f"garbled metadata file {name}")
            break
    _sync("open_set_aside")  # every process opens the manager after process 0 moved steps

  def _set_aside(self, step: int, why: str) -> None:
    src = self.workdir / CHECKPOINTS / str(step)
    dest, n = self.workdir / CORRUPT / str(step), 0
    while dest.exists():
      n += 1
      dest = self.workdir / CORRUPT / f"{step}.{n}"
    if jax.process_index() == 0:
      dest.parent.mkdir(parents=True, exist_ok=True)
      os.replace(src, dest)
    log.warning("checkpoint: skipped step %d in %s: %s (moved to %s)", step, src.parent, why, dest)


def _score(metrics: dict, metric: str, mode: str) -> float:
  """`metric` of `metrics`, negated if `mode` is "min": higher is better; -inf if missing or NaN
  (never the best)."""
  v = float((metrics or {}).get(metric, math.nan))
  if math.isnan(v):
    return -math.inf
  return v if mode == "max" else -v


class _KeepLastAndBest:
  """Orbax preservation policy: the last `n` steps and the best (see `_best`)."""

  def __init__(self, n: int, score):
    self.n, self.score = n, score

  def should_preserve(self, checkpoints, *, context) -> list[bool]:
    del context
    best = _best([c.metrics for c in checkpoints], self.score)
    return [i >= len(checkpoints) - self.n or i == best for i in range(len(checkpoints))]


def _best(metrics: list, score) -> int | None:
  """Index of the best `metrics` by `score` (the earliest of equals: a later step must do
  better to replace it), or None if no score is finite."""
  scores = [score(m or {}) for m in metrics]
  best = max(range(len(scores)), key=scores.__getitem__, default=None)
  return best if best is not None and math.isfinite(scores[best]) else None


def _sync(name: str) -> None:
  """A barrier of all processes (a no-op with one); keys are unique, as orbax requires."""
  ocp.multihost.sync_global_processes(f"jaxvision:{name}:{next(_BARRIERS)}")


def _parses(path: pathlib.Path) -> bool:
  try:
    json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError):
    return False
  return True


def _why(step_dir: pathlib.Path, error: Exception) -> str:
  """Why `step_dir` did not restore, in a few words plus the error's first line."""
  if not step_dir.is_dir():
    return "its folder is missing"
  if not (step_dir / "default").is_dir():
    return "folder default/ is missing"
  metadata = step_dir / "default" / "_METADATA"
  if not metadata.is_file() or not _parses(metadata):
    return f"{'garbled' if metadata.is_file() else 'missing'} metadata file default/_METADATA"
  for path in sorted((step_dir / "default").rglob("*")):
    if path.is_file() and path.stat().st_size and not any(_head(path)):
      return f"zeroed data file {path.relative_to(step_dir)}"
  message = " ".join(str(error).split())[:300]
  if "OUT_OF_RANGE" in message or "byte range" in message.lower():
    return f"truncated data file ({message})"
  return f"{type(error).__name__}: {message}"


def _head(path: pathlib.Path, size: int = 64) -> bytes:
  with path.open("rb") as f:
    return f.read(size)


def _legacy_best(best_dir: pathlib.Path) -> list[tuple[int, dict]]:
  """(step, metrics) of the best/ steps of an older workdir."""
  out = []
  for step_dir in best_dir.iterdir() if best_dir.is_dir() else []:
    path = step_dir / METRICS / METRICS
    if step_dir.name.isdigit() and path.is_file() and _parses(path):
      out.append((int(step_dir.name), json.loads(path.read_text())))
  return out
