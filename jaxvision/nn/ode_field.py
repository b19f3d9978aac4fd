"""Chen et al.'s vector field for ODE blocks (`ODEFunc`) and the convolutions it is made of.

`f(t, h) -> dh/dt`: GroupNorm-ReLU-ConcatConv twice and a last GroupNorm, with `t` as an extra
input channel of each convolution (ConcatConv2d). On the CPU its convolutions run as im2col
(`patches_conv`), whose backward pass XLA:CPU runs much faster inside a solver's loop.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


CONV_IMPLS = ("xla", "patches")


def patches_conv(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` for NHWC x HWIO as shifted slices and one matmul (im2col).

  Same parameters and result (up to rounding). XLA:CPU runs a convolution's backward pass
  inside a while loop, as in every adaptive ODE solve, 10-60x slower than this formulation,
  whose backward pass is slices, pads and matmuls. The patches are recomputed in the backward
  pass rather than stored (they are kh * kw times the input). Other layouts fall back to XLA's
  convolution.
  """
  dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  if (dimension_numbers is None or tuple(dimension_numbers.lhs_spec) != (0, 3, 1, 2)
      or tuple(dimension_numbers.rhs_spec) != (3, 2, 0, 1) or feature_group_count != 1
      or dilated or isinstance(padding, str)):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        precision=precision)
  kh, kw, cin, cout = rhs.shape
  (sh, sw), (ph, pw) = window_strides, padding

  @jax.checkpoint
  def conv(lhs, rhs):
    x = jnp.pad(lhs, ((0, 0), tuple(ph), tuple(pw), (0, 0)))
    ho = (x.shape[1] - kh) // sh + 1
    wo = (x.shape[2] - kw) // sw + 1
    cols = jnp.concatenate([x[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :]
                            for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.dot(cols, rhs.reshape(kh * kw * cin, cout), precision=precision)

  return conv(lhs, rhs)


def conv_impl(name: str | None) -> Callable | None:
  """The `conv_general_dilated` of nn.Conv for `name`; None: "patches" on CPU, else "xla"."""
  if name is None:
    name = "patches" if jax.default_backend() == "cpu" else "xla"
  if name not in CONV_IMPLS:
    raise ValueError(f"conv_impl: expected one of {CONV_IMPLS} or None, got {name!r}")
  return patches_conv if name == "patches" else None


def biased_conv(features: int, kernel: int, strides: int = 1, padding: int = 0,
                **kw) -> nn.Conv:
  """A convolution with bias, PyTorch's default kernel initialisation (U(+-1/sqrt(fan_in)), as
  torchdiffeq's example) and zero bias."""
  return nn.Conv(features, (kernel, kernel), (strides, strides),
                 padding=((padding, padding), (padding, padding)),
                 kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"), **kw)


class ConcatConv(nn.Module):
  """A 3x3 convolution that sees `t` as an extra first input channel (Chen et al.'s ConcatConv2d)."""
  features: int
  time_dependent: bool = True
  dtype: Any = jnp.float32
  conv_impl: str | None = None

  @nn.compact
  def __call__(self, t, h):
    if self.time_dependent:
      tt = jnp.broadcast_to(jnp.asarray(t, h.dtype), (*h.shape[:-1], 1))
      h = jnp.concatenate([tt, h], axis=-1)
    return biased_conv(self.features, 3, padding=1, dtype=self.dtype,
                       conv_general_dilated=conv_impl(self.conv_impl), name="conv")(h)


def group_norm(channels: int, groups: int, dtype: Any, name: str) -> nn.GroupNorm:
  """GroupNorm with the largest group count <= `groups` that divides `channels`."""
  return nn.GroupNorm(num_groups=math.gcd(groups, channels), epsilon=1e-5, dtype=dtype, name=name)


class ODEFunc(nn.Module):
  """Chen et al.'s vector field: GN-ReLU-ConcatConv-GN-ReLU-ConcatConv-GN, as many channels out as in.

  Attributes:
    time_dependent: feed `t` to both convolutions as an extra channel (ConcatConv2d); False
      gives an autonomous field f(h).
    groups: GroupNorm groups (at most; see `group_norm`). BatchNorm would make f depend on the
      batch and on the step, which an ODE's vector field must not.
    conv_impl: "xla" or "patches" (`patches_conv`); None: "patches" on CPU, "xla" elsewhere.
  """
  time_dependent: bool = True
  groups: int = 32
  dtype: Any = jnp.float32
  conv_impl: str | None = None

  @nn.compact
  def __call__(self, t, h):
    c = h.shape[-1]
    y = h.astype(self.dtype)
    y = nn.relu(group_norm(c, self.groups, self.dtype, "norm1")(y))
    y = ConcatConv(c, self.time_dependent, self.dtype, self.conv_impl, name="conv1")(t, y)
    y = nn.relu(group_norm(c, self.groups, self.dtype, "norm2")(y))
    y = ConcatConv(c, self.time_dependent, self.dtype, self.conv_impl, name="conv2")(t, y)
    return group_norm(c, self.groups, self.dtype, "norm3")(y).astype(h.dtype)
