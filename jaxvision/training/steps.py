"""Pure train and eval steps around a task (jaxvision.training.task.Task).

`train_step(state, batch, rng) -> (state, metrics)` is one body for every parallel wrapper:
under jit with a sharded batch it sees the global batch; under pmap (`axis_name` set) it sees
one shard, takes the task's `shard_loss` (whose pmean is the global batch's loss) and averages
gradients and metrics over `axis_name` (the model's BatchNorm must be built with the same
`axis_name` to synchronise its statistics).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxvision.losses import l1_penalty
from jaxvision.training.classification_task import Classification
from jaxvision.training.normalize import Stats, with_normalized_images
from jaxvision.training.task import Task

RNG_STREAMS = ("stochastic_depth", "dropout")


def _task(task: Task | None) -> Task:
  """`task`, or classification when None."""
  if task is None:
    return Classification()
  if not isinstance(task, Task):
    raise TypeError(f"task: got {type(task).__name__}; expected a jaxvision.training.task.Task")
  return task


def intermediate_metrics(intermediates, names: Sequence[str]) -> dict:
  """Sums of the values sown under each of `names` (e.g. 'nfe') anywhere in the model."""
  out = {}
  for name in names:
    leaves = [jnp.sum(jnp.asarray(v, jnp.float32))
              for path, v in jax.tree_util.tree_leaves_with_path(intermediates)
              if any(getattr(k, "key", None) == name for k in path)]
    if leaves:
      out[name] = sum(leaves)
  return out


def make_train_step(task: Task | None = None, *, l1: float = 0.0,
                    schedule: optax.Schedule | None = None, axis_name: str | None = None,
                    log_intermediates: Sequence[str] = (), normalize: Stats | None = None) -> Callable:
  """Returns `train_step(state, batch, rng) -> (state, metrics)` of `task` (classification
  when None).

  `normalize`: (mean, std) of the dataset (`DatasetInfo.mean/std`) when the batch's images
  come raw from the pipeline (`train_batches(..., normalize=False)`: uint8 or float32 in
  [0, 255]); the step normalises them on the device. None: images are already normalised.

  `log_intermediates` names values the model sows into "intermediates" (e.g. an ODE block's
  'nfe') that are summed over the model and logged as metrics.

  The step checks nothing about the batch (it is traced, so it cannot look at values): labels
  out of range, negative or float, and images of another rank, channel count or dtype, give a
  loss or an error from deep inside the model. Check host batches first with
  `task.check_batch(batch, image_shape=..., num_classes=...)`, or train through
  `parallel.data_parallel(...)`, whose steps check every host batch.
  """
  task = _task(task)
  collections = ["batch_stats"] + (["intermediates"] if log_intermediates else [])

  def train_step(state, batch, rng):
    batch = with_normalized_images(batch, normalize)
    step_rng = jax.random.fold_in(rng, state.step)
    # A task may add rng streams (`task.rng_streams`), e.g. a detector's "sampling".
    streams = RNG_STREAMS + tuple(task.rng_streams)
    rngs = dict(zip(streams, jax.random.split(step_rng, len(streams))))
    kwargs = task.model_kwargs(batch, train=True)

    def loss_fn(params):
      outputs, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                                        batch["image"], train=True, rngs=rngs, mutable=collections,
                                        **kwargs)
      loss, metrics = (task.loss(outputs, batch) if axis_name is None
                       else task.shard_loss(outputs, batch, axis_name))
      metrics.update(intermediate_metrics(updates.get("intermediates", {}), log_intermediates))
      total = loss + l1 * l1_penalty(params) if l1 else loss
      return total, (metrics, updates["batch_stats"])

    grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
      grads = jax.lax.pmean(grads, axis_name)
      metrics = jax.lax.pmean(metrics, axis_name)
    if schedule is not None:
      metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics

  return train_step


def make_eval_step(task: Task | None = None, axis_name: str | None = None,
                   normalize: Stats | None = None) -> Callable:
  """Returns `eval_step(state, batch) -> task.eval_outputs(...)`, combined over `axis_name`
  (`normalize`: as in `make_train_step`)."""
  task = _task(task)

  def eval_step(state, batch):
    batch = with_normalized_images(batch, normalize)
    outputs = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                             batch["image"], train=False, **task.model_kwargs(batch, train=False))
    result = task.eval_outputs(outputs, batch)
    if axis_name is not None:
      if task.eval_reduce == "sum":
        result = jax.lax.psum(result, axis_name)
      else:
        result = jax.lax.all_gather(result, axis_name, tiled=True)
    return result

  return eval_step
