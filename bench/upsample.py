"""Benchmark transpose convolution forms (forward + backward) and segmentation train steps.

  python bench/upsample.py                 # transpose convolution forms
  python bench/upsample.py --steps         # also FCN-8s / U-Net / SegNet train steps (shapes/64)

`jaxvision.nn.upsample.transpose_conv` uses the scatter form (one matmul, then overlap-add of
the kernel copies). The textbook gather form (a convolution over the stride-dilated input, what
`lax.conv_transpose` and Flax's ConvTranspose emit) gives the same numbers; this script times
both, median of repeated runs after compilation, every timing waiting on `block_until_ready`.
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
from jaxvision.nn.upsample import transpose_conv
from jaxvision.training import steps
from jaxvision.training.segmentation_task import Segmentation
from jaxvision.training.train_state import create_train_state


def gather_form(x, kernel, stride, padding, output_padding, feature_group_count=1):
  """The reference: correlate the stride-dilated, padded input with the flipped kernel."""
  k = kernel.shape[0]
  pads = [(k - 1 - padding, k - 1 - padding + output_padding)] * 2
  return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), pads, lhs_dilation=(stride,) * 2,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=feature_group_count)


def median_ms(fn, *args, repeats: int = 10) -> float:
  jax.block_until_ready(fn(*args))  # compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return 1e3 * statistics.median(times)


def bench_forms(batch: int = 32) -> None:
  print("transpose convolution, forward + backward (ms, median):")
  # U-Net's up-conv, FCN's upscore2, a 3x3 stride-2 layer, FCN-8s's final (per-channel) bilinear.
  for size, cin, cout, k, s, p, op, groups in [
      (32, 32, 16, 2, 2, 0, 0, 1), (8, 4, 4, 4, 2, 1, 0, 1), (16, 64, 32, 3, 2, 1, 1, 1),
      (8, 4, 4, 16, 8, 4, 0, 1), (8, 4, 4, 16, 8, 4, 0, 4)]:
    x = jax.random.normal(jax.random.key(0), (batch, size, size, cin))
    w = jax.random.normal(jax.random.key(1), (k, k, cin // groups, cout))
    row = []
    for name, fn in (("scatter", transpose_conv), ("gather", gather_form)):
      grad = jax.jit(jax.grad(lambda x, w, fn=fn: jnp.sum(
          fn(x, w, s, p, op, feature_group_count=groups) ** 2), argnums=(0, 1)))
      row.append(f"{name} {median_ms(grad, x, w):8.1f}")
    print(f"  {size}x{size}x{cin} -> {cout}, k={k} s={s} p={p} op={op} groups={groups}: "
          + "  ".join(row))


MODELS = {  # as in train/configs/{fcn,unet,segnet}_shapes.py
    "fcn8s": dict(backbone="resnet", backbone_options=dict(
        stage_sizes=(1, 1, 1, 1), widths=(32, 64, 128, 256), stem_width=32, scan=False)),
    "unet": dict(widths=(16, 32, 64, 128)),
    "segnet": dict(widths=(16, 32, 64, 128)),
}


def bench_steps(batch: int = 32, size: int = 64) -> None:
  print(f"segmentation train step, batch {batch}, {size}x{size} (ms, median):")
  rs = np.random.RandomState(0)
  data = {"image": jnp.asarray(rs.randn(batch, size, size, 3), jnp.float32),
          "mask": jnp.asarray(rs.randint(0, 4, (batch, size, size)), jnp.int32)}
  for name, options in MODELS.items():
    model = create_model(name, num_classes=4, **options)
    state = create_train_state(model, optax.adamw(1e-3), jax.random.key(0), (size, size, 3))
    step = jax.jit(steps.make_train_step(Segmentation()))
    print(f"  {name}: {median_ms(lambda s: step(s, data, jax.random.key(1)), state, repeats=5):.0f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", action="store_true", help="also time segmentation train steps")
  args = parser.parse_args()
  print(f"device: {jax.devices()[0].device_kind}")
  bench_forms()
  if args.steps:
    bench_steps()


if __name__ == "__main__":
  main()
