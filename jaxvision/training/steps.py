"""Pure train and eval steps around a task (jaxvision.training.tasks).

`train_step(state, batch, rng) -> (state, metrics)` is one body for every parallel wrapper:
under jit with a sharded batch it sees the global batch; under pmap (`axis_name` set) it sees
one shard and averages gradients and metrics over `axis_name` (the model's BatchNorm must be
built with the same `axis_name` to synchronise its statistics).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxvision.losses import l1_penalty
from jaxvision.training.tasks import Classification

RNG_STREAMS = ("stochastic_depth", "dropout")


def model_kwargs(task, batch, train: bool) -> dict:
  """Extra keyword arguments of the model's call from the task's optional
  `model_kwargs(batch, train)` hook (e.g. a detector's training targets); none by default."""
  hook = getattr(task, "model_kwargs", None)
  return hook(batch, train=train) if hook is not None else {}


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


def make_train_step(task=None, *, l1: float = 0.0, schedule: optax.Schedule | None = None,
                    axis_name: str | None = None, log_intermediates: Sequence[str] = ()) -> Callable:
  """Returns `train_step(state, batch, rng) -> (state, metrics)`.

  `log_intermediates` names values the model sows into "intermediates" (e.g. an ODE block's
  'nfe') that are summed over the model and logged as metrics.
  """
  task = task or Classification()
  collections = ["batch_stats"] + (["intermediates"] if log_intermediates else [])

  def train_step(state, batch, rng):
    step_rng = jax.random.fold_in(rng, state.step)
    # A task may add rng streams (its optional `rng_streams`), e.g. a detector's "sampling".
    streams = RNG_STREAMS + tuple(getattr(task, "rng_streams", ()))
    rngs = dict(zip(streams, jax.random.split(step_rng, len(streams))))
    kwargs = model_kwargs(task, batch, train=True)

    def loss_fn(params):
      outputs, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                                        batch["image"], train=True, rngs=rngs, mutable=collections,
                                        **kwargs)
      loss, metrics = task.loss(outputs, batch)
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


def make_eval_step(task=None, axis_name: str | None = None) -> Callable:
  """Returns `eval_step(state, batch) -> task.eval_outputs(...)`, combined over `axis_name`."""
  task = task or Classification()

  def eval_step(state, batch):
    outputs = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                             batch["image"], train=False, **model_kwargs(task, batch, False))
    result = task.eval_outputs(outputs, batch)
    if axis_name is not None:
      if task.eval_reduce == "sum":
        result = jax.lax.psum(result, axis_name)
      else:
        result = jax.lax.all_gather(result, axis_name, tiled=True)
    return result

  return eval_step
