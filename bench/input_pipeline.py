"""Benchmark: images/s of the TFDS input pipeline alone, next to the train step's, for one config.

  python bench/input_pipeline.py                                   # default config (digits)
  python bench/input_pipeline.py --config train/configs/fcn_shapes.py
  python bench/input_pipeline.py --config train/configs/cifar10.py --mock 512   # mock TFDS data

Three numbers for the config's dataset, batch size, model and model options:

  pipeline   `jaxvision.data.train_batches` alone: augmented numpy batches as the training loop
             gets them (after `--warmup` batches, which fill caches and shuffle buffers);
  step       the jitted train step alone on a synthetic batch of the same shape
             (bench/train_step.py);
  together   the pipeline feeding the step, as in training (the pipeline prefetches on its own
             threads while the step runs), on the same cores.

The pipeline is not the bottleneck when `pipeline` is well above `step` and `together` is close
to `step`. `--mock N` reads N fake examples per split through `tfds.testing.mock_data` (for
datasets not on disk: CIFAR, ImageNet, VOC, ...); offline datasets (digits, shapes) are built
on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from bench.cli import load  # noqa: E402
from bench.train_step import TrainStep, time_steps  # noqa: E402


def load_config(path: str):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def rate(batch: int, seconds: list[float]) -> float:
  """Images/s from per-batch times (median, robust to a busy machine)."""
  return batch / statistics.median(seconds)


def time_pipeline(batches, n: int, warmup: int) -> list[float]:
  for _ in range(warmup):
    next(batches)
  times = []
  for _ in range(n):
    t = time.perf_counter()
    next(batches)
    times.append(time.perf_counter() - t)
  return times


def time_together(step, state, batches, rng, n: int, warmup: int) -> list[float]:
  """The training loop's inner part: next batch, to the device, one step (waiting on it)."""
  times = []
  for i in range(warmup + n):
    t = time.perf_counter()
    batch = jax.device_put(next(batches))
    state, metrics = step(state, batch, rng)
    jax.block_until_ready((state, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - t)
  return times


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="train/configs/default.py")
  p.add_argument("--dataset", default=None, help="override config.dataset.name")
  p.add_argument("--batch", type=int, default=None, help="override config.batch_size")
  p.add_argument("--data-dir", default=None, help="override config.dataset.data_dir")
  p.add_argument("--mock", type=int, default=0, metavar="N",
                 help="read N mock examples per split (tfds.testing.mock_data)")
  p.add_argument("--batches", type=int, default=20, help="timed batches (and steps)")
  p.add_argument("--warmup", type=int, default=3)
  a = p.parse_args()

  from jaxvision import data  # TensorFlow only here

  c = load_config(a.config)
  if a.dataset:
    c.dataset.name = a.dataset
  if a.data_dir:
    c.dataset.data_dir = a.data_dir
  batch = a.batch or c.batch_size
  options = c.model.options.to_dict() if hasattr(c.model.options, "to_dict") else dict(c.model.options)
  mock = contextlib.nullcontext()
  if a.mock:
    import tensorflow_datasets as tfds
    mock = tfds.testing.mock_data(num_examples=a.mock, policy=tfds.testing.MockPolicy.USE_CODE)

  with mock:
    info = data.dataset_info(c.dataset)
    ts = TrainStep(c.model.name, batch, info.image_shape[0], options.pop("dtype", "fp32"),
                   info.image_shape[2], info.num_classes, **options)
    pipeline = rate(batch, time_pipeline(data.train_batches(c.dataset, batch, c.seed),
                                         a.batches, a.warmup))
    compiled = ts.compile()["compiled"]
    state, _ = time_steps(compiled, ts.init(), ts.data, ts.rng, 1)
    state, times = time_steps(compiled, state, ts.data, ts.rng, a.batches)
    step = rate(batch, times)
    together = rate(batch, time_together(ts.step, state, data.train_batches(c.dataset, batch, c.seed),
                                         ts.rng, a.batches, a.warmup))
  print(f"{c.dataset.name} {'x'.join(map(str, info.image_shape))}, batch {batch}, "
        f"{c.model.name} on {jax.devices()[0].device_kind}{' (mock data)' if a.mock else ''}: "
        f"pipeline {pipeline:,.0f} img/s, step {step:,.0f} img/s, together {together:,.0f} img/s "
        f"(pipeline / step {pipeline / step:.1f}x, together / step {together / step:.2f}) ({load()})")


if __name__ == "__main__":
  main()
