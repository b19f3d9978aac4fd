"""Benchmark: a stack of convolutions as a compiled loop (`lax.scan`) vs unrolled, forward and
backward, on the current backend. Why `scan_unroll=None` unrolls a stage's loop on the CPU.

  python bench/scan_backward.py                     # 4 layers, 3x3, 16 channels, 32x32, batch 32
  python bench/scan_backward.py --layers 8 --channels 32

The same weights and input both ways; times the jitted forward (the sum of the output) and its
gradient with respect to the stacked kernels: median over `--repeats` calls after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def conv(x, kernel):
  return jax.nn.relu(lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                              dimension_numbers=("NHWC", "HWIO", "NHWC")))


def scanned(kernels, x):
  return jnp.sum(lax.scan(lambda h, k: (conv(h, k), None), x, kernels)[0])


def unrolled(kernels, x):
  for k in kernels:
    x = conv(x, k)
  return jnp.sum(x)


def median_s(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # compile and warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--layers", type=int, default=4)
  p.add_argument("--channels", type=int, default=16)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args(argv)
  rs = np.random.RandomState(0)
  c = args.channels
  kernels = jnp.asarray(rs.randn(args.layers, 3, 3, c, c).astype(np.float32) / np.sqrt(9 * c))
  x = jnp.asarray(rs.randn(args.batch, args.size, args.size, c).astype(np.float32))
  print(f"{args.layers} convolutions 3x3x{c}x{c} on {args.batch}x{args.size}x{args.size}x{c}, "
        f"{jax.devices()[0].platform} (load {'/'.join(f'{v:.1f}' for v in os.getloadavg())})")
  print("| pass | scan | unrolled | scan / unrolled |\n|---|---|---|---|")
  for name, wrap in (("forward", lambda f: f), ("kernel gradient", jax.grad)):
    s = median_s(jax.jit(wrap(scanned)), kernels, x, repeats=args.repeats)
    u = median_s(jax.jit(wrap(unrolled)), kernels, x, repeats=args.repeats)
    print(f"| {name} | {1e3 * s:,.1f} ms | {1e3 * u:,.1f} ms | {s / u:.1f}x |")


if __name__ == "__main__":
  main()
