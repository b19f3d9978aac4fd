"""The task contract: what a train step minimises and what an evaluation measures.

A task is the only part of the training core that knows the batch format. `steps.py` calls
`loss` in training (`shard_loss` under pmap) and `eval_outputs` in evaluation; the loop feeds
the eval outputs of every batch to `accumulator()` on the host and logs its `result()`.
Subclasses implement the four abstract methods and may override the attributes and the hooks
below; nothing else is looked up on a task.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np

EVAL_REDUCTIONS = ("sum", "gather")


class Accumulator(abc.ABC):
  """Collects eval outputs on the host (`add`) and scores the whole split (`result`)."""

  @abc.abstractmethod
  def add(self, outputs) -> None:
    """Adds one eval step's outputs."""

  @abc.abstractmethod
  def result(self) -> dict:
    """Metric name -> float over everything added."""


class SumAccumulator(Accumulator):
  """Adds dicts of arrays over batches on the host in 64 bits (pixel counts exceed int32) and
  hands the totals to `summarize`."""

  def __init__(self, summarize):
    self._total, self._summarize = None, summarize

  def add(self, outputs: dict) -> None:
    outputs = {k: np.asarray(v, np.float64) for k, v in jax.device_get(outputs).items()}
    self._total = outputs if self._total is None else {k: self._total[k] + v
                                                        for k, v in outputs.items()}

  def result(self) -> dict:
    return self._summarize(self._total)


class Task(abc.ABC):
  """Loss, eval outputs, host accumulator and batch checks of one kind of batch.

  Attributes:
    batch_keys: the keys every batch holds.
    eval_reduce: how `eval_outputs` combine over pmap devices: "sum" (psum; outputs that add
      over batches) or "gather" (all_gather; per-example outputs).
    rng_streams: rng streams the model needs in training besides "stochastic_depth" and
      "dropout" (e.g. a detector's "sampling").
    eval_metric_names: the names `accumulator().result()` may return; `config.best_metric`
      must be one of them.
  """

  batch_keys: tuple[str, ...] = ("image",)
  eval_reduce: str = "sum"
  rng_streams: tuple[str, ...] = ()
  eval_metric_names: tuple[str, ...] = ("loss", "accuracy")

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if cls.eval_reduce not in EVAL_REDUCTIONS:
      raise ValueError(f"{cls.__name__}.eval_reduce: got {cls.eval_reduce!r}; expected one of "
                       f"{EVAL_REDUCTIONS}")

  @classmethod
  def from_config(cls, config, model=None) -> "Task":
    """The task of a training config; `model` is the model the run built (None: not built)."""
    del config, model  # nothing to configure by default
    return cls()

  @abc.abstractmethod
  def loss(self, outputs, batch: dict) -> tuple[jax.Array, dict]:
    """(scalar loss to minimise, train metrics including "loss") of the model's outputs."""

  def shard_loss(self, outputs, batch: dict, axis_name: str) -> tuple[jax.Array, dict]:
    """`loss` of one pmap shard, scaled so that its pmean over `axis_name` is the loss of the
    global batch. The default fits losses that are means over a fixed number of examples per
    shard (every shard holds as many); a loss normalised by a data-dependent count (valid pixels)
    overrides it and divides by the count over all devices (`shard_mean`)."""
    del axis_name
    return self.loss(outputs, batch)

  @abc.abstractmethod
  def eval_outputs(self, outputs, batch: dict):
    """What an eval step returns for `accumulator().add` (a pytree of arrays)."""

  @abc.abstractmethod
  def accumulator(self) -> Accumulator:
    """A fresh host-side accumulator of eval outputs."""

  @abc.abstractmethod
  def check_batch(self, batch: dict, *, image_shape, num_classes: int) -> None:
    """Raises ValueError/TypeError naming the field, what it holds and what was expected."""

  def model_kwargs(self, batch: dict, *, train: bool) -> dict:
    """Extra keyword arguments of the model's call (e.g. a detector's targets); none here."""
    del batch, train
    return {}

  def check_model(self, model) -> None:
    """Raises ValueError if this task cannot train `model`; accepts any model here."""
    del model

  def on_train_end(self, state, config, workdir) -> None:
    """Runs once after training on the primary process (e.g. saves drawn predictions)."""
    del state, config, workdir


def shard_mean(total, count, axis_name: str | None):
  """`total / count` over the global batch, as one shard's share: under pmap, `total * n /
  psum(count)` on each of the n devices, whose pmean is `psum(total) / psum(count)` (a mean of
  per-device means would weight the shards' elements unequally). Without `axis_name`: the mean."""
  if axis_name is None:
    return total / jnp.maximum(count, 1.0)
  devices = jax.lax.psum(1, axis_name)
  return total * devices / jnp.maximum(jax.lax.psum(count, axis_name), 1.0)
