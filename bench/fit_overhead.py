"""The training loop's overhead: images/s of `fit` against the bare jitted step.

  python bench/fit_overhead.py                         # cifar_resnet20, batch 128, 32x32, CPU
  python bench/fit_overhead.py --model resnet18 --batch 256 --steps 300

Both run the same model, batch and devices, built by the same `build_run` on the offline
`noise32` dataset (uint8 32x32x3 images through the real pipeline: TFDS files, shuffle, crop,
flip). The bare step is `run.dp.train_step_on_device` on one batch already on the devices,
dispatched `--steps` times with a single wait at the end: the devices never idle. `fit` is the
whole loop (input pipeline, checks, prefetch, metric fetches at log steps, progress bar off);
its images/s is the median of the logged windows after the first (which holds compilation).
The last line prints `ratio: X` (fit / bare); the bar is >= 0.95.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.cli import load  # noqa: E402
from jaxvision.training.config import default_config  # noqa: E402
from jaxvision.training.fit import fit_run  # noqa: E402
from jaxvision.training.metric_writer import METRICS_FILE, read_metrics  # noqa: E402
from jaxvision.training.run import build_run  # noqa: E402

WINDOWS = 5  # logged windows of fit's run


def config(model: str, batch: int, size: int, steps: int):
  c = default_config()
  c.model.name = model
  c.dataset.name = "noise32"
  c.dataset.image_size = 0 if size == 32 else size
  c.batch_size = batch
  c.eval_batch_size = batch
  c.num_train_steps = steps
  c.log_every_steps = max(1, steps // WINDOWS)
  c.eval_every_steps = steps
  c.checkpoint_every_steps = steps
  c.keep_checkpoints = 1
  c.plot = False
  return c


def bare_images_per_s(c, workdir: str, steps: int) -> float:
  run = build_run(c, workdir)
  try:
    batch = run.dp.put_batch(next(run.train_batches()))
    state = run.state
    for _ in range(2):  # compile and warm up
      state, metrics = run.dp.train_step_on_device(state, batch, run.step_rng)
    jax.block_until_ready((state, metrics))
    t = time.perf_counter()
    for _ in range(steps):
      state, metrics = run.dp.train_step_on_device(state, batch, run.step_rng)
    jax.block_until_ready((state, metrics))
    return steps * c.batch_size / (time.perf_counter() - t)
  finally:
    run.close()


def fit_images_per_s(c, workdir: str) -> float:
  fit_run(build_run(c, workdir), progress=False)
  rows = [r for r in read_metrics(os.path.join(workdir, METRICS_FILE)) if r["split"] == "train"]
  return statistics.median(r["images_per_s"] for r in rows[1:])  # the first holds compilation


def measure(model: str = "cifar_resnet20", batch: int = 128, size: int = 32,
            steps: int = 60) -> dict:
  """{"fit_ips", "bare_ips", "ratio"} of `model` at `batch` (bare and fit: `steps` each)."""
  if steps < 2 * WINDOWS:
    raise ValueError(f"steps: got {steps}; expected >= {2 * WINDOWS} (a few logged windows)")
  c = config(model, batch, size, steps)
  with tempfile.TemporaryDirectory() as bare_dir, tempfile.TemporaryDirectory() as fit_dir:
    bare = bare_images_per_s(c, bare_dir, steps)
    fit = fit_images_per_s(c, fit_dir)
  return {"fit_ips": fit, "bare_ips": bare, "ratio": fit / bare}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="cifar_resnet20")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--steps", type=int, default=60, help="steps of each (fit logs 5 windows)")
  a = p.parse_args()
  r = measure(a.model, a.batch, a.size, a.steps)
  print(f"{a.model} batch={a.batch} size={a.size} on {jax.device_count()} x "
        f"{jax.devices()[0].device_kind}: fit {r['fit_ips']:,.0f} img/s, bare step "
        f"{r['bare_ips']:,.0f} img/s ({load()})")
  print(f"ratio: {r['ratio']:.3f}")


if __name__ == "__main__":
  main()
