"""Benchmark one training step: compile time, median step time, images/s, FLOPs and MFU.

  python bench/train_step.py --model resnet50 --batch 256 --size 224 --dtype bf16
  python bench/train_step.py --model unet --batch 16 --size 64 --num-classes 4 --dtype bf16
  python bench/train_step.py --model yolov2 --batch 16 --size 64 --num-classes 4 \\
      --option backbone=resnet18

Any registered model: classifiers train on labels, segmentation models (fcn*, unet, segnet) on
per-pixel masks, YOLO on boxes (the task's loss, as in training). Synthetic data already on the
device; SGD with momentum; the step is jitted with the state donated, and every timing waits on
`block_until_ready`. `--dtype bf16` computes in bfloat16 with float32 parameters, BatchNorm
statistics and loss. FLOPs come from XLA's cost analysis of the compiled step; MFU is printed
where the device's peak is known. Compile time is split into lowering (tracing to StableHLO) and
XLA's compilation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision.models import create_model
from jaxvision.models.fcn import FCN
from jaxvision.models.segnet import SegNet
from jaxvision.models.unet import UNet
from jaxvision.models.yolo import YOLO
from jaxvision.training import steps
from jaxvision.training.detection_task import Detection
from jaxvision.training.segmentation_task import Segmentation
from jaxvision.training.tasks import Classification
from jaxvision.training.train_state import create_train_state

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.cli import load, parse_options  # noqa: E402  (the repo root, for `python bench/x.py`)

# Dense peak FLOP/s per device (bf16 / fp32) from the vendors' spec sheets.
PEAK_FLOPS = {
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "TPU v4": {"bf16": 275e12, "fp32": 275e12 / 2},
    "TPU v5 lite": {"bf16": 197e12, "fp32": 197e12 / 2},
    "TPU v5p": {"bf16": 459e12, "fp32": 459e12 / 2},
}
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
SEGMENTATION_MODELS = (FCN, SegNet, UNet)
MAX_BOXES = 4


def peak_flops(device: jax.Device, dtype: str) -> float | None:
  kind = device.device_kind
  for name, peaks in PEAK_FLOPS.items():
    if name.lower() in kind.lower():
      return peaks[dtype]
  return None


def task_for(model, num_classes: int):
  """The training task of `model`: detection (YOLO), segmentation or classification."""
  if isinstance(model, YOLO):
    return Detection(model, num_classes)
  if isinstance(model, SEGMENTATION_MODELS):
    return Segmentation()
  return Classification()


def synthetic_batch(task, batch: int, size: int, channels: int, num_classes: int) -> dict:
  """A batch of random images with the targets `task` trains on, on the default device."""
  rs = np.random.RandomState(0)
  data = {"image": rs.randn(batch, size, size, channels).astype(np.float32)}
  if isinstance(task, Segmentation):
    data["mask"] = rs.randint(0, num_classes, (batch, size, size)).astype(np.int32)
  elif isinstance(task, Detection):
    corner = rs.uniform(0.0, 0.5, (batch, MAX_BOXES, 2))
    extent = rs.uniform(0.1, 0.5, (batch, MAX_BOXES, 2))
    data["boxes"] = np.concatenate([corner, corner + extent], -1).astype(np.float32)
    data["classes"] = rs.randint(0, num_classes, (batch, MAX_BOXES)).astype(np.int32)
    data["valid"] = np.arange(MAX_BOXES)[None, :] < rs.randint(1, MAX_BOXES + 1, (batch, 1))
  else:
    data["label"] = rs.randint(0, num_classes, batch).astype(np.int32)
  return jax.tree.map(jnp.asarray, data)


class TrainStep:
  """A model's jitted train step (state donated), its synthetic batch and its initial state.

  `state` is abstract (shapes only) until `init()`: lowering, compiling and XLA's cost and
  memory analyses need no parameters.
  """

  def __init__(self, model_name: str, batch: int, size: int, dtype: str = "fp32",
               channels: int = 3, num_classes: int = 1000, **options):
    self.model = create_model(model_name, num_classes=num_classes,
                              dtype=DTYPES.get(dtype, dtype), **options)
    self.image_shape = (size, size, channels)
    task = task_for(self.model, num_classes)
    self.data = synthetic_batch(task, batch, size, channels, num_classes)
    self.rng = jax.random.key(1)
    self.tx = optax.sgd(0.1, momentum=0.9)
    self.state = jax.eval_shape(self._init, jax.random.key(0))
    self.step = jax.jit(steps.make_train_step(task), donate_argnums=(0,))

  def _init(self, rng):
    return create_train_state(self.model, self.tx, rng, self.image_shape)

  def init(self):
    """Real initial parameters (jitted init)."""
    self.state = jax.jit(self._init)(jax.random.key(0))
    return self.state

  def compile(self) -> dict:
    """Lowers and compiles the step: {"lower_s", "xla_compile_s", "compiled"}."""
    t0 = time.perf_counter()
    lowered = self.step.lower(self.state, self.data, self.rng)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return {"lower_s": t1 - t0, "xla_compile_s": t2 - t1, "compiled": compiled}


def flops_of(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def time_steps(compiled, state, data, rng, n: int) -> tuple[object, list[float]]:
  """Runs `n` steps (the state is donated and threaded through); returns (state, seconds)."""
  times = []
  for _ in range(n):
    t = time.perf_counter()
    state, m = compiled(state, data, rng)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t)
  return state, times


def benchmark(model_name: str, batch: int, size: int, dtype: str = "fp32", steps_to_time: int = 10,
              channels: int = 3, num_classes: int = 1000, **options) -> dict:
  ts = TrainStep(model_name, batch, size, dtype, channels, num_classes, **options)
  c = ts.compile()
  compiled = c["compiled"]
  flops = flops_of(compiled)
  state, _ = time_steps(compiled, ts.init(), ts.data, ts.rng, 1)  # warm-up
  _, times = time_steps(compiled, state, ts.data, ts.rng, steps_to_time)
  median = statistics.median(times)
  peak = peak_flops(jax.devices()[0], dtype)
  return {"model": model_name, "batch": batch, "size": size, "dtype": dtype,
          "device": jax.devices()[0].device_kind, "lower_s": c["lower_s"],
          "xla_compile_s": c["xla_compile_s"], "compile_s": c["lower_s"] + c["xla_compile_s"],
          "step_s_median": median, "images_per_s": batch / median, "gflops_per_step": flops / 1e9,
          "mfu": (flops / median / peak) if peak else None}


def format_result(r: dict) -> str:
  mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a (peak unknown)"
  return (f"{r['model']} batch={r['batch']} size={r['size']} dtype={r['dtype']} on {r['device']}: "
          f"compile {r['compile_s']:.1f}s (lowering {r['lower_s']:.1f}s + XLA "
          f"{r['xla_compile_s']:.1f}s), step median {1e3 * r['step_s_median']:.1f} ms, "
          f"{r['images_per_s']:,.0f} img/s, {r['gflops_per_step']:.1f} GFLOP/step, MFU {mfu}")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
  """The model and step flags shared by the bench scripts."""
  p.add_argument("--model", default="resnet18")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
  p.add_argument("--channels", type=int, default=3)
  p.add_argument("--num-classes", type=int, default=1000)
  p.add_argument("--no-scan", action="store_true", help="unroll the residual stages")
  p.add_argument("--scan-unroll", type=int, default=None,
                 help="blocks per compiled scan iteration (default: all on CPU, 1 elsewhere)")
  p.add_argument("--remat", action="store_true", help="rematerialise residual blocks")
  p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                 help="any other model option (repeatable), e.g. backbone=resnet18")


def model_options(a: argparse.Namespace) -> dict:
  """The model options the flags set (only those given, so that any model family works)."""
  options = parse_options(a.option)
  if a.no_scan:
    options["scan"] = False
  if a.scan_unroll is not None:
    options["scan_unroll"] = a.scan_unroll
  if a.remat:
    options["remat"] = True
  return options


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_model_arguments(p)
  p.add_argument("--steps", type=int, default=10, help="timed steps after one warm-up step")
  a = p.parse_args()
  r = benchmark(a.model, a.batch, a.size, a.dtype, a.steps, a.channels, a.num_classes,
                **model_options(a))
  print(f"{format_result(r)} ({load()})")


if __name__ == "__main__":
  main()
