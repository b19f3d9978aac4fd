"""Benchmark the two ways of sliding a crop classifier over an image, as the windows multiply.

  python bench/sliding_window.py                  # 64x64 image (shapes/64), 22x22 window_cnn
  python bench/sliding_window.py --image_size 128 --repeats 5

Way (a) crops and warps every window and classifies each (`crop_logits`); way (b) warps the
image once per scale and runs the classifier fully convolutionally (`fcn_logits`; strides below
the network's total stride S = 4 take (S / stride)^2 shifted passes per scale). Both give the
same logits for the same windows (tests/test_sliding_window.py). For each window set it prints
the windows per image, each way's median wall time per image (after compilation, waiting on
`block_until_ready`) and windows per second, XLA's cost-analysis FLOPs of each compiled
function (for (a), also the part spent warping the crops: RoIAlign as dense matrix products),
and the crop/FCN ratios. Random weights (timings do not depend on them); NMS, the same for both,
is left out.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.cli import load  # noqa: E402
from jaxvision.models import create_model  # noqa: E402
from jaxvision.models.sliding_window import SlidingWindowDetector  # noqa: E402
from jaxvision.ops.crop import crop_and_resize  # noqa: E402

# (window sides in pixels, stride in classifier-input pixels): more scales, smaller strides.
WINDOW_SETS = (
    ((24,), 8),
    ((24,), 4),
    ((15, 24, 38), 4),
    ((12, 15, 19, 24, 30), 4),
    ((12, 15, 19, 24, 30), 2),
    ((12, 15, 19, 24, 30, 38, 48), 2),
    ((12, 15, 19, 24, 30), 1),
)


def _xla_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def _median_seconds(fn, x, repeats: int) -> float:
  jax.block_until_ready(fn(x))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(x))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _warp_flops(scales, image) -> float:
  total = 0.0
  for s in scales:
    boxes = jnp.asarray(s.boxes())[None]
    warp = jax.jit(functools.partial(crop_and_resize, size=s.input_size,
                                     sampling_ratio=s.sampling_ratio))
    total += _xla_flops(warp.lower(image[None], boxes).compile())
  return total


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--image_size", type=int, default=64)
  parser.add_argument("--input_size", type=int, default=22)
  parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  n = args.input_size
  model = create_model("window_cnn", num_classes=4, widths=tuple(args.widths))
  variables = jax.jit(lambda r: model.init(r, jnp.zeros((1, n, n, 3)), train=False))(
      jax.random.key(0))
  detector = SlidingWindowDetector(model, variables, n)
  image = jax.random.normal(jax.random.key(1), (args.image_size, args.image_size, 3))
  print(f"device: {jax.devices()[0].device_kind}; {load()}; image {args.image_size}x"
        f"{args.image_size}, window_cnn widths {tuple(args.widths)}, input {n}x{n}, "
        f"network stride {detector.net_stride}; median of {args.repeats}")
  print("| window sides (px) | stride | windows | crop ms/img | FCN ms/img | crop win/s | "
        "FCN win/s | crop GFLOP (warp) | FCN GFLOP | time crop/FCN | FLOP crop/FCN |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for sides, stride in WINDOW_SETS:
    sides = [w for w in sides if w <= args.image_size]
    scales = detector.scales(image.shape[:2], sides, stride)
    k = sum(s.grid[0] * s.grid[1] for s in scales)
    row = {}
    for way in ("crop", "fcn"):
      fn = jax.jit(functools.partial(detector.logits, scales=scales, way=way))
      flops = _xla_flops(fn.lower(image).compile())
      row[way] = (_median_seconds(fn, image, args.repeats), flops)
    (tc, fc), (tf, ff) = row["crop"], row["fcn"]
    warp = _warp_flops(scales, image)
    print(f"| {', '.join(f'{w:g}' for w in sides)} | {stride} | {k} | {1e3 * tc:.2f} | "
          f"{1e3 * tf:.2f} | {k / tc:,.0f} | {k / tf:,.0f} | {fc / 1e9:.3f} ({warp / 1e9:.3f}) | "
          f"{ff / 1e9:.3f} | {tc / tf:.1f} | {fc / ff:.1f} |")
  print(load())


if __name__ == "__main__":
  main()
