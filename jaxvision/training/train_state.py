"""The train state: step, params, batch_stats and opt_state as one pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """Flax's TrainState (step, params, opt_state; apply_fn and tx static) plus batch_stats."""
  batch_stats: Any = None


def create_train_state(model, tx: optax.GradientTransformation, rng: jax.Array,
                       image_shape: tuple[int, ...]) -> TrainState:
  """Initialises `model` on a dummy batch of one image of `image_shape` (H, W, C)."""
  variables = jax.jit(lambda r: model.init(r, jnp.zeros((1, *image_shape), jnp.float32),
                                           train=False))(rng)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables.get("batch_stats", {}), tx=tx)


def checkpoint_tree(state: TrainState) -> dict:
  """The parts of a state that a checkpoint holds."""
  return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
          "opt_state": state.opt_state}


def from_checkpoint_tree(state: TrainState, tree: dict) -> TrainState:
  """`state` with its arrays replaced by those of a restored `checkpoint_tree`."""
  return state.replace(**tree)
