"""Benchmark one training step: compile time, median step time, images/s, FLOPs and MFU.

  python bench/train_step.py --model resnet50 --batch 256 --size 224 --dtype bf16

Synthetic data already on the device; SGD with momentum; the step is jitted with the state
donated, and every timing waits on `block_until_ready`. FLOPs come from XLA's cost analysis
of the compiled step; MFU is printed where the device's peak is known.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision.models import create_model
from jaxvision.training import steps
from jaxvision.training.train_state import create_train_state

# Dense peak FLOP/s per device (bf16 / fp32) from the vendors' spec sheets.
PEAK_FLOPS = {
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "TPU v4": {"bf16": 275e12, "fp32": 275e12 / 2},
    "TPU v5 lite": {"bf16": 197e12, "fp32": 197e12 / 2},
    "TPU v5p": {"bf16": 459e12, "fp32": 459e12 / 2},
}
DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def peak_flops(device: jax.Device, dtype: str) -> float | None:
  kind = device.device_kind
  for name, peaks in PEAK_FLOPS.items():
    if name.lower() in kind.lower():
      return peaks[dtype]
  return None


def benchmark(model_name: str, batch: int, size: int, dtype: str = "fp32", steps_to_time: int = 10,
              channels: int = 3, num_classes: int = 1000, **options) -> dict:
  model = create_model(model_name, num_classes=num_classes, dtype=DTYPES[dtype], **options)
  state = create_train_state(model, optax.sgd(0.1, momentum=0.9), jax.random.key(0),
                             (size, size, channels))
  rs = np.random.RandomState(0)
  data = {"image": jnp.asarray(rs.randn(batch, size, size, channels), jnp.float32),
          "label": jnp.asarray(rs.randint(0, num_classes, batch), jnp.int32)}
  rng = jax.random.key(1)
  step = jax.jit(steps.make_train_step(), donate_argnums=(0,))

  t0 = time.perf_counter()
  compiled = step.lower(state, data, rng).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

  state, m = compiled(state, data, rng)  # warm-up
  jax.block_until_ready(m)
  times = []
  for _ in range(steps_to_time):
    t = time.perf_counter()
    state, m = compiled(state, data, rng)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t)
  median = statistics.median(times)
  peak = peak_flops(jax.devices()[0], dtype)
  return {"model": model_name, "batch": batch, "size": size, "dtype": dtype,
          "device": jax.devices()[0].device_kind, "compile_s": compile_s,
          "step_s_median": median, "images_per_s": batch / median, "gflops_per_step": flops / 1e9,
          "mfu": (flops / median / peak) if peak else None}


def format_result(r: dict) -> str:
  mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a (peak unknown)"
  return (f"{r['model']} batch={r['batch']} size={r['size']} dtype={r['dtype']} on {r['device']}: "
          f"compile {r['compile_s']:.1f}s, step median {1e3 * r['step_s_median']:.1f} ms, "
          f"{r['images_per_s']:,.0f} img/s, {r['gflops_per_step']:.1f} GFLOP/step, MFU {mfu}")


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="resnet18")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
  p.add_argument("--steps", type=int, default=10, help="timed steps after one warm-up step")
  p.add_argument("--channels", type=int, default=3)
  p.add_argument("--num-classes", type=int, default=1000)
  p.add_argument("--no-scan", action="store_true", help="unroll the residual stages")
  p.add_argument("--scan-unroll", type=int, default=None,
                 help="blocks per compiled scan iteration (default: all on CPU, 1 elsewhere)")
  p.add_argument("--remat", action="store_true", help="rematerialise residual blocks")
  a = p.parse_args()
  r = benchmark(a.model, a.batch, a.size, a.dtype, a.steps, a.channels, a.num_classes,
                scan=not a.no_scan, scan_unroll=a.scan_unroll, remat=a.remat)
  print(format_result(r))


if __name__ == "__main__":
  main()
