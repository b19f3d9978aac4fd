"""Pure train and eval steps for classification.

`train_step(state, batch, rng) -> (state, metrics)` is one body for every parallel wrapper:
under jit with a sharded batch it sees the global batch; under pmap (`axis_name` set) it sees
one shard and averages gradients and metrics over `axis_name` (the model's BatchNorm must be
built with the same `axis_name` to synchronise its statistics).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxvision.losses import cross_entropy, l1_penalty

RNG_STREAMS = ("stochastic_depth", "dropout")


def make_train_step(*, label_smoothing: float = 0.0, l1: float = 0.0,
                    schedule: optax.Schedule | None = None,
                    axis_name: str | None = None) -> Callable:
  """Returns `train_step(state, batch, rng) -> (state, metrics)`."""

  def train_step(state, batch, rng):
    step_rng = jax.random.fold_in(rng, state.step)
    rngs = dict(zip(RNG_STREAMS, jax.random.split(step_rng, len(RNG_STREAMS))))

    def loss_fn(params):
      logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                                       batch["image"], train=True, rngs=rngs,
                                       mutable=["batch_stats"])
      ce = cross_entropy(logits, batch["label"], label_smoothing=label_smoothing)
      loss = ce + l1 * l1_penalty(params) if l1 else ce
      return loss, (ce, logits, updates["batch_stats"])

    grads, (ce, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": ce, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}
    if axis_name is not None:
      grads = jax.lax.pmean(grads, axis_name)
      metrics = jax.lax.pmean(metrics, axis_name)
    if schedule is not None:
      metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return new_state, metrics

  return train_step


def make_eval_step(axis_name: str | None = None) -> Callable:
  """Returns `eval_step(state, batch) -> sums` of loss, correct predictions and examples.

  Rows with `batch["weight"] == 0` (padding) do not count. Sums, not means, so that the
  caller adds them up exactly over batches and devices.
  """

  def eval_step(state, batch):
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                            batch["image"], train=False)
    labels = batch["label"]
    weights = batch.get("weight", jnp.ones(labels.shape, jnp.float32))
    losses = cross_entropy(logits, labels, weights=weights) * weights.sum()
    sums = {"loss": losses,
            "correct": jnp.sum((jnp.argmax(logits, -1) == labels) * weights),
            "count": weights.sum()}
    if axis_name is not None:
      sums = jax.lax.psum(sums, axis_name)
    return sums

  return eval_step


def summarize_eval(sums: dict) -> dict:
  """Eval sums (added over batches) -> {'loss', 'accuracy'} means."""
  count = max(float(sums["count"]), 1.0)
  return {"loss": float(sums["loss"]) / count, "accuracy": float(sums["correct"]) / count}
