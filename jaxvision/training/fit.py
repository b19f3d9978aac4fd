"""The training loop: `fit(config, workdir)`.

Builds the model, optimizer and data from a config, resumes from the workdir's latest
checkpoint, trains with a progress bar, evaluates and checkpoints every epoch (by default),
and on SIGTERM/SIGINT saves before it stops. A non-finite loss stops the run without saving
over the last good checkpoint. Multi-host (docs/SCALING.md): every process runs `fit` on the
same workdir and reads its own shard of the data; process 0 writes metrics and checkpoints.
"""

from __future__ import annotations

import json
import math
import pathlib
import signal
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxvision.models import create_model
from jaxvision.training import config as config_lib
from jaxvision.training import distributed, finetune, optim, parallel
from jaxvision.training.checkpoint import Checkpointer
from jaxvision.training.metric_writer import MetricWriter, read_metrics
from jaxvision.training.tasks import make_task
from jaxvision.training.train_state import create_train_state


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


def _agreed_signal(stop: _StopRequest) -> int:
  """The signal that stops the run (0: none). With several processes, any process's signal
  stops all of them at the same step, so that they save together."""
  signum = stop.signum or 0
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    signum = int(np.max(multihost_utils.process_allgather(np.int32(signum))))
  return signum


def _check_finite(params, step: int, ckpt: Checkpointer, workdir: pathlib.Path) -> None:
  if not all(np.isfinite(x).all() for x in jax.tree.leaves(params)):
    raise NonFiniteLoss(f"parameters are not finite at step {step}; stopped without saving (the "
                        f"last checkpoint, step {ckpt.latest_step()} in {workdir}, holds finite "
                        "parameters); lower optimizer.learning_rate or check the data")


def _every(value: int, steps_per_epoch: int) -> int:
  return steps_per_epoch if value <= 0 else value


def fit(config, workdir: str | pathlib.Path, *, progress: bool = True) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary."""
  from jaxvision import data  # TensorFlow is needed for the input pipeline only

  config_lib.check_config(config)
  distributed.initialize(config.distributed)  # a no-op on one process
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  info = data.dataset_info(config.dataset)
  n_dev = jax.device_count()  # over all processes
  if config.parallel == "pmap" and jax.process_count() > 1:
    raise ValueError(f"config.parallel: 'pmap' averages gradients over this process's devices "
                     f"only; with {jax.process_count()} processes expected 'jit'")
  for key in ("batch_size", "eval_batch_size"):
    if config[key] <= 0 or config[key] % n_dev:
      raise ValueError(f"config.{key}: {config[key]} does not divide across {n_dev} devices; "
                       f"expected a positive multiple of {n_dev}")
  steps_per_epoch = info.num_train // config.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"config.batch_size: {config.batch_size} is larger than the {info.num_train} "
                     "training examples")
  total_steps = (config.num_train_steps if config.num_train_steps > 0
                 else int(math.ceil(config.num_epochs * steps_per_epoch)))

  axis_name = parallel.PMAP_AXIS if config.parallel == "pmap" else None
  model = create_model(config.model.name, num_classes=info.num_classes, axis_name=axis_name,
                       **config.model.options)
  schedule = optim.make_schedule(config.optimizer, steps_per_epoch=steps_per_epoch,
                                 total_steps=total_steps, batch_size=config.batch_size)
  tx = finetune.make_optimizer(optim.make_optimizer(config.optimizer, schedule), config)
  task = make_task(config)
  dp = parallel.data_parallel(config.parallel, task, l1=config.optimizer.l1, schedule=schedule,
                              log_intermediates=tuple(config.log_intermediates))

  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, best_metric=config.best_metric)
  ckpt.check_run({"model": config.model.name, "model_options": config.model.options.to_dict(),
                  "dataset": config.dataset.name, "num_classes": info.num_classes,
                  "image_shape": list(info.image_shape)})
  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)
  state = create_train_state(model, tx, init_rng, info.image_shape)
  state = finetune.prepare_state(state, config, load_pretrained_weights=ckpt.latest_step() is None)
  state = ckpt.restore_latest(state)
  start = int(state.step)
  state = dp.put_state(state)

  writer = MetricWriter(workdir)
  eval_every = _every(config.eval_every_steps, steps_per_epoch)
  ckpt_every = _every(config.checkpoint_every_steps, steps_per_epoch)
  check = dict(image_shape=info.image_shape, num_classes=info.num_classes)
  batches = data.train_batches(config.dataset, global_batch_size=config.batch_size,
                               seed=config.seed, start_step=start)

  def evaluate(state):
    acc = task.accumulator()
    for b in data.eval_batches(config.dataset, global_batch_size=config.eval_batch_size):
      task.check_batch(b, **check)
      acc.add(dp.eval_step(state, b))
    return acc.result()

  t0 = time.time()
  eval_metrics = None
  primary = distributed.is_primary()  # writes the summary and plots (checkpointer, writer: own)
  bar = tqdm(range(start, total_steps), initial=start, total=total_steps,
             disable=not (progress and primary),
             desc=f"{config.model.name} on {config.dataset.name}", unit="step", mininterval=1.0)
  try:
    with _StopRequest() as stop:
      for step in bar:
        batch = next(batches)
        task.check_batch(batch, **check)
        state, metrics = dp.train_step(state, batch, step_rng)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(metrics["loss"]):
          raise NonFiniteLoss(f"loss is {metrics['loss']} at step {step}; stopped without saving "
                              f"(the last checkpoint, step {ckpt.latest_step()} in {workdir}, "
                              "holds finite parameters); lower optimizer.learning_rate or check "
                              "the data")
        done = step + 1
        if done % config.log_every_steps == 0 or done == total_steps:
          writer.write(done, "train", {**metrics, "epoch": done / steps_per_epoch})
          bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if done % eval_every == 0 or done == total_steps:
          eval_metrics = evaluate(state)
          writer.write(done, "eval", eval_metrics)
          bar.set_postfix({"loss": f"{metrics['loss']:.3f}", f"eval_{config.best_metric}":
                           f"{eval_metrics.get(config.best_metric, float('nan')):.4f}"})
        signum = _agreed_signal(stop)
        if done % ckpt_every == 0 or done == total_steps or signum:
          host_state = jax.device_get(dp.get_state(state))
          _check_finite(host_state.params, done, ckpt, workdir)
          ckpt.save(host_state, eval_metrics if done % eval_every == 0 or
                    done == total_steps else None)
        if signum:
          raise TrainingInterrupted(signum, done, workdir)
    if eval_metrics is None:  # resumed after the last step: evaluate the restored state
      eval_metrics = evaluate(state)
    best_step, best = ckpt.best_metrics()
  finally:
    bar.close()
    writer.close()
    ckpt.close()

  summary = {"model": config.model.name, "dataset": config.dataset.name, "steps": total_steps,
             "epochs": total_steps / steps_per_epoch, "eval_loss": eval_metrics["loss"],
             "eval": eval_metrics, "eval_accuracy": eval_metrics.get("accuracy"),
             "best_metric": config.best_metric, "best_step": best_step,
             "best_value": None if best is None else best.get(config.best_metric),
             "best_accuracy": None if best is None else best.get("accuracy"),
             "num_params": int(sum(np.size(x) for x in jax.tree.leaves(dp.get_state(state).params))),
             "seconds": time.time() - t0, "workdir": str(workdir)}
  if not primary:
    return summary
  (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
  if config.plot:
    from jaxvision.analysis.plots import plot_training_curves
    plot_training_curves(read_metrics(writer.path), workdir / "curves.png",
                         title=f"{config.model.name} on {config.dataset.name}")
  if hasattr(task, "on_train_end"):  # e.g. segmentation overlays; on this process's devices
    task.on_train_end(jax.device_get(dp.get_state(state)), config, workdir)
  return summary
