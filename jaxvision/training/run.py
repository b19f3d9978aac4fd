"""Building a training run from a config: `build_run(config, workdir) -> Run`.

Everything `fit` (jaxvision.training.fit) and the studies (jaxvision.analysis) need before the
first step: the dataset's shape, the model, the task, the optimizer and its schedule, the
data-parallel step, the checkpointer (the workdir's latest checkpoint restored), the metric
writer and the state on the devices. Every check of the config runs before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Iterator

import jax
import optax

from jaxvision.models import create_model
from jaxvision.training import config as config_lib
from jaxvision.training import distributed, finetune, optim, parallel
from jaxvision.training import workdir as workdir_lib
from jaxvision.training.checkpoint import Checkpointer
from jaxvision.training.metric_writer import MetricWriter
from jaxvision.training.task import Task
from jaxvision.training.tasks import make_task
from jaxvision.training.train_state import TrainState, create_train_state


@dataclasses.dataclass
class Run:
  """A built run. `state` is on the devices (`dp.put_state`), restored at `start_step`."""

  config: Any
  workdir: pathlib.Path
  info: Any  # jaxvision.data.dataset_info: image_shape, num_classes, num_train, ...
  model: Any
  task: Task
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  dp: parallel.ShardedJit | parallel.Pmap
  ckpt: Checkpointer
  state: TrainState
  start_step: int
  total_steps: int
  steps_per_epoch: int
  init_rng: jax.Array  # initialised the parameters (before any restore)
  step_rng: jax.Array  # folded with the step number in every train step
  writer: MetricWriter

  @property
  def eval_batch_size(self) -> int:
    """`config.eval_batch_size` rounded up to a multiple of the devices: the eval pass pads
    its batches with rows of weight 0 anyway, so any eval batch size runs on any devices."""
    n = jax.device_count()
    return -(-self.config.eval_batch_size // n) * n

  def train_batches(self) -> Iterator[dict]:
    """This process's training batches from `start_step` on (the stream a fresh run sees),
    with raw images (uint8 where the data are): the step normalises them on the devices."""
    from jaxvision import data  # TensorFlow is needed for the input pipeline only
    return data.train_batches(self.config.dataset, global_batch_size=self.config.batch_size,
                              seed=self.config.seed, start_step=self.start_step,
                              normalize=False)

  def eval_batches(self, *, normalize: bool = True) -> Iterator[dict]:
    """This process's padded eval batches (`weight` 0 on padding rows) of the whole eval split;
    `normalize=False`: raw images, as the run's `dp.eval_step` takes them."""
    from jaxvision import data  # TensorFlow is needed for the input pipeline only
    return data.eval_batches(self.config.dataset, global_batch_size=self.eval_batch_size,
                             normalize=normalize)

  def evaluate(self, state) -> dict:
    """The task's eval metrics of `state` (on the devices) over the eval split; `dp.eval_step`
    checks each batch before it goes to the devices."""
    acc = self.task.accumulator()
    for batch in self.eval_batches(normalize=False):
      acc.add(self.dp.eval_step(state, batch))
    return acc.result()

  def host_state(self, state) -> TrainState:
    """`state` (on the devices) as one copy in host memory."""
    return jax.device_get(self.dp.get_state(state))

  def close(self) -> None:
    """Closes the metric writer and waits for the checkpoints being written."""
    self.writer.close()
    self.ckpt.close()


def _check_devices(config, n_dev: int) -> None:
  if config.parallel == "pmap" and jax.process_count() > 1:
    raise ValueError(f"config.parallel: 'pmap' averages gradients over this process's devices "
                     f"only; with {jax.process_count()} processes expected 'jit'")
  if config.batch_size % n_dev:  # (eval batches are padded to a multiple: Run.eval_batch_size)
    raise ValueError(f"config.batch_size: {config.batch_size} does not divide across {n_dev} "
                     f"devices; expected a positive multiple of {n_dev}")


def check_best_metric(config, task: Task) -> None:
  """Raises unless `config.best_metric` is one of the task's eval metrics."""
  names = tuple(task.eval_metric_names)
  if config.best_metric not in names:
    raise ValueError(f"config.best_metric: got {config.best_metric!r}; expected one of the "
                     f"{config.task!r} task's eval metrics {list(names)}")


def build_run(config, workdir: str | pathlib.Path, *, model=None,
              num_classes: int | None = None) -> Run:
  """Checks `config`, builds its run in `workdir` (resuming from the latest checkpoint there).

  `model`: the Linen module to train instead of the registry's `config.model.name` (built with
  the dataset's classes and, under pmap, `axis_name=parallel.PMAP_AXIS`). `num_classes`: the
  classes of the batches' labels when a study's batches are not the dataset's (e.g. regions
  with a background class); None: the dataset's.
  """
  from jaxvision import data  # TensorFlow is needed for the input pipeline only

  config_lib.check_config(config)
  distributed.initialize(config.distributed)  # a no-op on one process
  info = data.dataset_info(config.dataset)
  if num_classes is not None:
    info = dataclasses.replace(info, num_classes=num_classes)
  _check_devices(config, jax.device_count())  # devices over all processes
  steps_per_epoch = info.num_train // config.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"config.batch_size: {config.batch_size} is larger than the {info.num_train} "
                     "training examples")
  total_steps = (config.num_train_steps if config.num_train_steps > 0
                 else int(math.ceil(config.num_epochs * steps_per_epoch)))
  if model is None:
    axis_name = parallel.PMAP_AXIS if config.parallel == "pmap" else None
    model = create_model(config.model.name, num_classes=info.num_classes, axis_name=axis_name,
                         **config.model.options)
  task = make_task(config, model)
  task.check_model(model)
  check_best_metric(config, task)

  schedule = optim.make_schedule(config.optimizer, steps_per_epoch=steps_per_epoch,
                                 total_steps=total_steps, batch_size=config.batch_size)
  tx = finetune.make_optimizer(optim.make_optimizer(config.optimizer, schedule), config)
  dp = parallel.data_parallel(config.parallel, task, l1=config.optimizer.l1, schedule=schedule,
                              log_intermediates=tuple(config.log_intermediates),
                              image_shape=info.image_shape, num_classes=info.num_classes,
                              normalize=(info.mean, info.std))

  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, best_metric=config.best_metric,
                      best_mode=config.get("best_mode", "max"))
  try:
    # A resume under other trajectory settings is refused unless config.resume_with_changes.
    workdir_lib.check_resume(workdir, config, allow_changes=config.resume_with_changes)
    workdir_lib.write_run_record(workdir, config)
    ckpt.check_run({"model": config.model.name,
                    "model_options": config.model.options.to_dict(),
                    "dataset": config.dataset.name, "num_classes": info.num_classes,
                    "image_shape": list(info.image_shape)})
    init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
    state = create_train_state(model, tx, init_rng, info.image_shape)
    state = finetune.prepare_state(state, config,
                                   load_pretrained_weights=ckpt.latest_step() is None)
    state = ckpt.restore_latest(state)
    start_step = int(state.step)
    state = dp.put_state(state)
  except BaseException:
    ckpt.close()
    raise
  return Run(config=config, workdir=workdir, info=info, model=model, task=task,
             schedule=schedule, tx=tx, dp=dp, ckpt=ckpt, state=state, start_step=start_step,
             total_steps=total_steps, steps_per_epoch=steps_per_epoch, init_rng=init_rng,
             step_rng=step_rng, writer=MetricWriter(workdir))
