"""`lax.conv_general_dilated` with the formulation that is fastest on the backend.

XLA:CPU's convolution is slow on small output maps: for a 3x3 convolution over a batch of 32 it
runs forward and backward 108x slower than im2col + one matmul on a 2x2 output with 512
channels (ResNet-18's last stage on 64x64 images), 14x on the 2x2 output of a stride-2
transition, about 2x on 4x4 outputs. On larger maps single convolutions are closer, but whole
train steps still run faster with im2col up to 32x32 outputs (ResNet-18 on 64x64, batch 32:
about 10-19% per step; CIFAR ResNet-20 on 32x32, batch 128: 6%; docs/BENCHMARKS.md). So on the
CPU, convolutions with at most `SMALL_OUTPUT` output pixels run as `patches_conv` (its patches
take batch x pixels x kh*kw*C floats: 300 MB for a 3x3x64 convolution on 32x32, batch 128);
larger maps, and every other backend, keep XLA's convolution. Same parameters, same result up
to float rounding.
"""

from __future__ import annotations

import contextlib

import jax
from jax import lax

from jaxvision.nn.ode_field import patches_conv

SMALL_OUTPUT = 1024  # output pixels (H * W) up to which XLA:CPU convolutions run as im2col


def conv_general_dilated(lhs, rhs, window_strides, padding, **kw):
  """Drop-in for `lax.conv_general_dilated` (nn.Conv's `conv_general_dilated`), NHWC x HWIO."""
  if jax.default_backend() == "cpu" and _output_pixels(lhs, rhs, window_strides, padding,
                                                       kw.get("dimension_numbers")) <= SMALL_OUTPUT:
    return patches_conv(lhs, rhs, window_strides, padding, **kw)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kw)


@contextlib.contextmanager
def xla_convolutions():
  """Within the block, functions traced keep XLA's convolution on every backend: to count a
  model's own FLOPs and memory (im2col multiplies the zero padding too and holds the patches)
  or to inspect its convolutions in HLO."""
  global SMALL_OUTPUT
  saved, SMALL_OUTPUT = SMALL_OUTPUT, 0
  try:
    yield
  finally:
    SMALL_OUTPUT = saved


def _output_pixels(lhs, rhs, window_strides, padding, dimension_numbers) -> float:
  """H * W of a 2-D NHWC convolution's output; infinity for other layouts or string padding."""
  if (lhs.ndim != 4 or isinstance(padding, str) or dimension_numbers is None
      or tuple(dimension_numbers.lhs_spec) != (0, 3, 1, 2)):
    return float("inf")
  pixels = 1
  for size, kernel, stride, (low, high) in zip(lhs.shape[1:3], rhs.shape[:2], window_strides,
                                               padding):
    pixels *= max((size + low + high - kernel) // stride + 1, 0)
  return pixels
