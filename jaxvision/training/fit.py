"""The training loop: `fit(config, workdir)` = `build_run` (jaxvision.training.run) + `fit_run`.

Resumes from the workdir's latest checkpoint, trains with a progress bar, evaluates and
checkpoints every epoch (by default), and on SIGTERM/SIGINT saves before it stops. A non-finite loss stops the run without saving
over the last good checkpoint. Multi-host (docs/SCALING.md): every process runs `fit` on the
same workdir and reads its own shard of the data; process 0 writes metrics and checkpoints.
"""

from __future__ import annotations

import json
import pathlib
import signal
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxvision.training import distributed
from jaxvision.training.checkpoint import Checkpointer
from jaxvision.training.metric_window import MetricWindow
from jaxvision.training.metric_writer import read_metrics
from jaxvision.training.prefetch import prefetch_to_device
from jaxvision.training.run import Run, build_run
from jaxvision.training.run_clock import RunClock


class TrainingInterrupted(Exception):
  """Raised after a SIGTERM/SIGINT once the state has been checkpointed."""

  def __init__(self, signum: int, step: int, workdir: pathlib.Path):
    self.signum, self.step = signum, step
    super().__init__(f"{signal.Signals(signum).name} at step {step}: checkpoint saved in "
                     f"{workdir}; run the same command again to resume")


class NonFiniteLoss(FloatingPointError):
  """The training loss became NaN or infinite."""


class _StopRequest:
  """Records SIGTERM/SIGINT so the loop can checkpoint and stop between steps."""

  def __init__(self):
    self.signum = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)


def _agreed_signal(stop: _StopRequest, sync: bool) -> int:
  """The signal that stops the run (0: none). With several processes, any process's signal
  stops all of them at the same step, so that they save together: they agree at sync steps
  (`sync`: log, eval and checkpoint steps) only, never on ordinary steps."""
  signum = stop.signum or 0
  if jax.process_count() > 1:
    if not sync:
      return 0
    from jax.experimental import multihost_utils
    signum = int(np.max(multihost_utils.process_allgather(np.int32(signum))))
  return signum


def _check_finite(params, step: int, ckpt: Checkpointer, workdir: pathlib.Path) -> None:
  if not all(np.isfinite(x).all() for x in jax.tree.leaves(params)):
    raise NonFiniteLoss(f"parameters are not finite at step {step}; stopped without saving (the "
                        f"last checkpoint, step {ckpt.latest_step()} in {workdir}, holds finite "
                        "parameters); lower optimizer.learning_rate or check the data")


def _check_window(window: MetricWindow, since: int, done: int, ckpt: Checkpointer,
                  workdir: pathlib.Path) -> None:
  """Fetches the window's metrics; NonFiniteLoss names the step of the first non-finite loss
  among steps `since`+1..`done` (fetched together)."""
  bad = window.check()
  if bad is not None:
    step, loss = bad
    raise NonFiniteLoss(f"loss is {loss} at step {step + 1}; stopped without saving (the last "
                        f"checkpoint, step {ckpt.latest_step()} in {workdir}, holds finite "
                        f"parameters; steps {since + 1}-{done} were checked together at step "
                        f"{done}); lower optimizer.learning_rate or check the data")


def _every(value: int, steps_per_epoch: int) -> int:
  return steps_per_epoch if value <= 0 else value


def fit(config, workdir: str | pathlib.Path, *, progress: bool = True) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary."""
  return fit_run(build_run(config, workdir), progress=progress)


def fit_run(run: Run, *, progress: bool = True) -> dict:
  """Trains a built run to `run.total_steps`, closes it and returns the summary (written to
  `summary.json`, with `curves.png` if `config.plot`, by the primary process). Its `seconds` are
  the run's wall time from step 0 to its last step over the invocations that trained it
  (`run_clock`): a resumed run counts its earlier invocations, a finished one is not re-timed.

  Ordinary steps never wait for the devices: the next batch is put on the devices while the
  current step runs, and metrics stay there until a log, eval or checkpoint step fetches them
  (train rows in metrics.jsonl are means over the steps since the last log step, with the
  window's `images_per_s`).
  """
  config, workdir, dp, ckpt, writer = run.config, run.workdir, run.dp, run.ckpt, run.writer
  state, start, total_steps = run.state, run.start_step, run.total_steps
  eval_every = _every(config.eval_every_steps, run.steps_per_epoch)
  ckpt_every = _every(config.checkpoint_every_steps, run.steps_per_epoch)
  batches = prefetch_to_device(run.train_batches(), dp.put_batch)
  window = MetricWindow()
  checked = start  # the steps up to here had finite losses
  tick, tick_step = time.perf_counter(), start  # the last log step and when it ended

  eval_metrics = None
  primary = distributed.is_primary()  # writes the summary and plots (checkpointer, writer: own)
  clock = RunClock(workdir, start, write=primary)
  bar = tqdm(range(start, total_steps), initial=start, total=total_steps,
             disable=not (progress and primary),
             desc=f"{config.model.name} on {config.dataset.name}", unit="step", mininterval=1.0)
  try:
    with _StopRequest() as stop:
      for step in bar:
        state, metrics = dp.train_step_on_device(state, next(batches), run.step_rng)
        window.add(step, metrics)
        done = step + 1
        log = done % config.log_every_steps == 0 or done == total_steps
        evaluate = done % eval_every == 0 or done == total_steps
        checkpoint = done % ckpt_every == 0 or done == total_steps
        signum = _agreed_signal(stop, sync=log or evaluate or checkpoint)
        if not (log or evaluate or checkpoint or signum):
          continue
        _check_window(window, checked, done, ckpt, workdir)
        checked = done
        if log:
          now = time.perf_counter()
          train = {**window.mean(), "epoch": done / run.steps_per_epoch,
                   "images_per_s": (done - tick_step) * config.batch_size / (now - tick)}
          tick, tick_step = now, done
          writer.write(done, "train", train)
          bar.set_postfix(loss=f"{train['loss']:.3f}")
        if evaluate:
          eval_metrics = run.evaluate(state)
          writer.write(done, "eval", eval_metrics)
          bar.set_postfix({"loss": f"{train['loss']:.3f}" if log else "-",
                           f"eval_{config.best_metric}":
                           f"{eval_metrics.get(config.best_metric, float('nan')):.4f}"})
        if checkpoint or signum:
          host_state = run.host_state(state)
          _check_finite(host_state.params, done, ckpt, workdir)
          ckpt.save(host_state, eval_metrics if evaluate else None)
          clock.mark(done)
        if signum:
          raise TrainingInterrupted(signum, done, workdir)
        if evaluate or checkpoint:  # not the training's time: restart the images/s window
          tick = time.perf_counter()
    if eval_metrics is None:  # resumed after the last step: evaluate the restored state
      eval_metrics = run.evaluate(state)
    best_step, best = ckpt.best_metrics()
  finally:
    bar.close()
    run.close()

  summary = {"model": config.model.name, "dataset": config.dataset.name, "steps": total_steps,
             "epochs": total_steps / run.steps_per_epoch, "eval_loss": eval_metrics["loss"],
             "eval": eval_metrics, "eval_accuracy": eval_metrics.get("accuracy"),
             "best_metric": config.best_metric, "best_step": best_step,
             "best_value": None if best is None else best.get(config.best_metric),
             "best_accuracy": None if best is None else best.get("accuracy"),
             "num_params": int(sum(np.size(x) for x in jax.tree.leaves(dp.get_state(state).params))),
             "seconds": clock.seconds(total_steps), "workdir": str(workdir)}
  if not primary:
    return summary
  (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
  if config.plot:
    from jaxvision.plots.curves import plot_training_curves  # matplotlib only where it is used
    plot_training_curves(read_metrics(writer.path), workdir / "curves.png",
                         title=f"{config.model.name} on {config.dataset.name}")
  # e.g. segmentation overlays; on this process's devices
  run.task.on_train_end(run.host_state(state), config, workdir)
  return summary
