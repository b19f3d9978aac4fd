"""RoIAlign and RoI max pooling: jaxvision against torchvision on the same boxes (CPU).

  python bench/roi_ops.py                  # jaxvision only
  PYTHONPATH=.venv/lib/python3.11/site-packages /tmp/torchvenv/bin/python bench/roi_ops.py

(the second line runs the project's packages from a Python that has torch and torchvision; torch
is imported only if it is there). 512 RoIs on one 64 x 64 x 256 map, 7 x 7 bins, spatial_scale 1:
centres uniform over the map, sides uniform in [2, 40] cells (some reach past the border).
Medians of --repeats runs after compilation, forward only, and forward + backward (gradient of
the sum with respect to the features); the two libraries alternate run by run, so a busy machine
slows both alike. The ratio is jaxvision / torchvision (< 1: jaxvision is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.cli import load  # noqa: E402
from jaxvision.ops import roi_align, roi_pool  # noqa: E402

try:
  import torch
  import torchvision
except ImportError:
  torch = torchvision = None


def case(rois: int, size: int, channels: int, seed: int = 0):
  rs = np.random.default_rng(seed)
  features = rs.standard_normal((1, size, size, channels), np.float32)
  centre, side = rs.uniform(0, size, (rois, 2)), rs.uniform(2, 40, (rois, 2))
  boxes = np.concatenate([centre - side / 2, centre + side / 2], 1).astype(np.float32)
  return features, boxes


def ops(sampling_ratio: int):
  """{name: (jaxvision fn(features, boxes), torchvision fn(features_nchw, rois))}."""
  align = dict(output_size=7, spatial_scale=1.0, sampling_ratio=sampling_ratio)
  return {
      f"roi_align sampling_ratio={sampling_ratio}": (
          lambda f, b: roi_align(f, b, **align),
          lambda f, r: torchvision.ops.roi_align(f, r, aligned=False, **align)),
      "roi_pool": (lambda f, b: roi_pool(f, b, 7, 1.0),
                   lambda f, r: torchvision.ops.roi_pool(f, r, 7, 1.0)),
  }


def timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rois", type=int, default=512)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--channels", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args(argv)
  features, boxes = case(args.rois, args.size, args.channels)
  f_jax, b_jax = jnp.asarray(features), jnp.asarray(boxes[None])
  print(f"{args.rois} RoIs on 1x{args.size}x{args.size}x{args.channels}, 7x7 bins; "
        f"jax {jax.__version__}" + (f", torch {torch.__version__}, torchvision "
                                    f"{torchvision.__version__} ({torch.get_num_threads()} threads)"
                                    if torch else ", no torch") + f"; {load()}")
  if torch:
    f_torch = torch.from_numpy(features.transpose(0, 3, 1, 2).copy())
    rois = torch.cat([torch.zeros(args.rois, 1), torch.from_numpy(boxes)], 1)
  print(f"{'op':34s} {'pass':9s} {'jaxvision ms':>12s} {'torchvision ms':>14s} {'ratio':>6s}")
  named = {**ops(2), **ops(-1)}
  for name, (jax_fn, torch_fn) in named.items():
    for backward in (False, True):
      if backward:
        jitted = jax.jit(jax.grad(lambda f, b, fn=jax_fn: jnp.sum(fn(f, b))))
      else:
        jitted = jax.jit(jax_fn)
      run_jax = lambda: jax.block_until_ready(jitted(f_jax, b_jax))
      run_jax()  # compile
      run_torch = None
      if torch:
        def run_torch(fn=torch_fn, backward=backward):
          f = f_torch.detach().requires_grad_(backward)
          if backward:
            fn(f, rois).sum().backward()
          else:
            with torch.no_grad():
              fn(f, rois)
        run_torch()
      t_jax, t_torch = [], []
      for _ in range(args.repeats):
        t_jax.append(timed(run_jax))
        if run_torch:
          t_torch.append(timed(run_torch))
      ms_jax = 1e3 * statistics.median(t_jax)
      cells = f"{ms_jax:12.1f}"
      if t_torch:
        ms_torch = 1e3 * statistics.median(t_torch)
        cells += f" {ms_torch:14.1f} {ms_jax / ms_torch:6.2f}"
      print(f"{name:34s} {'fwd+bwd' if backward else 'forward':9s} {cells}", flush=True)
  print(load())


if __name__ == "__main__":
  main()
