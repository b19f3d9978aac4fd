"""Data parallelism around one step body: jit with NamedSharding (primary) and pmap.

Both wrappers take numpy batches as the host sees them (its share of the global batch) and
return metrics as replicated arrays; `put_batch` checks a host batch and starts its transfer to
the devices, so that a loop can put the next batch while the current step runs
(`train_step_on_device`). `ShardedJit` splits the batch over a 1-D mesh axis
`data` and replicates the state; BatchNorm then sees the global batch by construction, and
the same code runs multi-host after `jax.distributed.initialize()`. `Pmap` maps the step over
local devices with `axis_name="batch"`; the step body averages gradients and metrics over it,
and the model must be built with `axis_name="batch"` so BatchNorm statistics are synchronised.
Each wrapper checks every host batch before it goes to the devices (`check`; data_parallel
passes the task's checks, validation.check_step_batch).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvision.nn.ode_pmap import shapes_only
from jaxvision.training import steps
from jaxvision.training.tasks import Classification
from jaxvision.training.validation import check_step_batch

PMAP_AXIS = "batch"
MESH_AXIS = "data"
KINDS = ("jit", "pmap")


def _no_check(batch: dict) -> None:
  del batch


def check_divisible(batch: dict, num_shards: int, what: str) -> None:
  size = len(next(iter(batch.values())))
  if size % num_shards:
    raise ValueError(f"batch: {size} examples per host do not divide across {num_shards} {what}; "
                     f"expected a multiple of {num_shards} (set batch_size accordingly)")


class ShardedJit:
  """`jax.jit` with the batch sharded over mesh axis `data` and the state replicated."""

  axis_name = None

  def __init__(self, train_step: Callable, eval_step: Callable,
               devices: Sequence[jax.Device] | None = None,
               check: Callable[[dict], None] | None = None):
    self.devices = list(devices or jax.devices())
    self.check = check or _no_check
    self.mesh = Mesh(np.array(self.devices), (MESH_AXIS,))
    self.data = NamedSharding(self.mesh, P(MESH_AXIS))
    self.replicated = NamedSharding(self.mesh, P())
    self._train = jax.jit(train_step, in_shardings=(self.replicated, self.data, self.replicated),
                          out_shardings=(self.replicated, self.replicated), donate_argnums=(0,))
    self._eval = jax.jit(eval_step, in_shardings=(self.replicated, self.data),
                         out_shardings=self.replicated)

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def put_state(self, state):
    return jax.device_put(state, self.replicated)

  def get_state(self, state):
    return state

  def put_batch(self, batch: dict):
    self.check(batch)
    local = len([d for d in self.devices if d.process_index == jax.process_index()])
    check_divisible(batch, local, "local devices")
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self.data, x), batch)

  def train_step_on_device(self, state, batch, rng):
    """The step on a batch that `put_batch` already placed."""
    return self._train(state, batch, rng)

  def train_step(self, state, batch: dict, rng):
    return self._train(state, self.put_batch(batch), rng)

  def lower_train_step(self, state, batch: dict, rng):
    """The jitted train step lowered for these arguments (`.compile()` for XLA's analyses)."""
    return self._train.lower(state, self.put_batch(batch), rng)

  def eval_step(self, state, batch: dict):
    return self._eval(state, self.put_batch(batch))


class Pmap:
  """`jax.pmap` over local devices with `axis_name="batch"`; the state is stacked per device."""

  axis_name = PMAP_AXIS

  def __init__(self, train_step: Callable, eval_step: Callable,
               devices: Sequence[jax.Device] | None = None,
               check: Callable[[dict], None] | None = None):
    self.devices = list(devices or jax.local_devices())
    self.check = check or _no_check
    self._train = jax.pmap(shapes_only(train_step), axis_name=PMAP_AXIS, in_axes=(0, 0, None),
                           donate_argnums=(0,), devices=self.devices)
    self._eval = jax.pmap(shapes_only(eval_step), axis_name=PMAP_AXIS, devices=self.devices)
    # One row of a stacked [devices, ...] array per device: what pmap reads without a copy.
    self._stacked = NamedSharding(Mesh(np.array(self.devices), (PMAP_AXIS,)), P(PMAP_AXIS))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def put_state(self, state):
    n = self.num_devices
    return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), state)

  def get_state(self, state):
    return jax.tree.map(lambda x: x[0], state)

  def put_batch(self, batch: dict):
    self.check(batch)
    n = self.num_devices
    check_divisible(batch, n, "local devices")
    return jax.tree.map(lambda x: jax.device_put(
        np.reshape(x, (n, x.shape[0] // n, *x.shape[1:])), self._stacked), batch)

  def lower_train_step(self, state, batch: dict, rng):
    """The pmapped train step lowered for these arguments (`.compile()` for XLA's analyses)."""
    return self._train.lower(state, self.put_batch(batch), rng)

  def train_step_on_device(self, state, batch, rng):
    """The step on a batch that `put_batch` already placed."""
    state, metrics = self._train(state, batch, rng)
    return state, jax.tree.map(lambda m: m[0], metrics)

  def train_step(self, state, batch: dict, rng):
    return self.train_step_on_device(state, self.put_batch(batch), rng)

  def eval_step(self, state, batch: dict):
    return jax.tree.map(lambda m: m[0], self._eval(state, self.put_batch(batch)))


def data_parallel(kind: str, task=None, devices: Sequence[jax.Device] | None = None, *,
                  image_shape: Sequence[int] | None = None, num_classes: int | None = None,
                  normalize: steps.Stats | None = None, **step_options):
  """A ShardedJit ('jit') or Pmap ('pmap') around `steps.make_train_step(task, **step_options)`
  (task None: classification).

  Its `train_step` and `eval_step` check every host batch first, as `fit` does, cheaply, and
  raise ValueError/TypeError naming the field: the task's keys, the image's rank and dtype, and
  integer class ids with the batch's leading size. Given `num_classes` (and `image_shape`
  [H, W, C] of the model's input; None: the batch's own), the task's full `check_batch`, class
  ids within range included; without it, class ids are only checked to be >= 0. Value checks
  read host (numpy) arrays only; see validation.check_step_batch. `normalize`: the dataset's
  (mean, std) when batches hold raw images (steps.make_train_step).
  """
  task = task or Classification()
  check = functools.partial(check_step_batch, task, image_shape=image_shape,
                            num_classes=num_classes)
  if kind == "jit":
    return ShardedJit(steps.make_train_step(task, normalize=normalize, **step_options),
                      steps.make_eval_step(task, normalize=normalize), devices, check)
  if kind == "pmap":
    return Pmap(steps.make_train_step(task, axis_name=PMAP_AXIS, normalize=normalize,
                                      **step_options),
                steps.make_eval_step(task, PMAP_AXIS, normalize=normalize), devices, check)
  raise ValueError(f"parallel: expected one of {KINDS}, got {kind!r}")
