"""U-Net (Ronneberger et al. 2015) built from residual blocks: the lecture's "ResNet-like fully
convolutional CNN".

Encoder level i (i > 0 after a 2x2 max-pool) and decoder level i (after a 2x2 stride-2 "up-conv"
and concatenation with encoder level i's output) are each a residual transition block (projection
shortcut when the width changes) followed by a `ResidualStage` of identical blocks, as in ResNet.
A 1x1 convolution gives per-pixel logits at the input resolution.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.fcn import check_divisible
from jaxvision.models.registry import module_options, register_model
from jaxvision.nn import residual
from jaxvision.nn.checks import check_images
from jaxvision.nn.residual import BasicBranch, ResidualBlock, ResidualStage
from jaxvision.nn.upsample import ConvTranspose


class ResidualLevel(nn.Module):
  """`num_blocks` basic residual blocks of width `features`; the first projects if needed."""
  features: int
  num_blocks: int
  norm: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    block = dict(out_features=self.features, norm=self.norm, dtype=self.dtype)
    branch = functools.partial(BasicBranch, features=self.features, norm=self.norm, dtype=self.dtype)
    rest = self.num_blocks
    if x.shape[-1] != self.features:
      x = ResidualBlock(branch=branch, shortcut="projection", name="transition", **block)(
          x, 1.0, train)
      rest -= 1
    return ResidualStage(dict(block, branch=branch), rest, scan=False, name="stage")(x, train=train)


class UNet(nn.Module):
  """U-Net with residual levels.

  Attributes:
    num_classes: output classes (background included).
    widths: channels of each level, finest first; the input is pooled len(widths) - 1 times.
    num_blocks: residual blocks per level on each side (>= 1).
    axis_name: mapped axis over which BatchNorm statistics are averaged (pmap).
    dtype: computation dtype (parameters and BatchNorm statistics stay float32).
  """
  num_classes: int
  widths: Sequence[int] = (32, 64, 128, 256)
  num_blocks: int = 1
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    if len(self.widths) < 2 or self.num_blocks < 1:
      raise ValueError(f"widths, num_blocks: expected at least 2 levels and 1 block per level, got "
                       f"widths={tuple(self.widths)}, num_blocks={self.num_blocks}")
    check_divisible(x, 2 ** (len(self.widths) - 1), f"U-Net with {len(self.widths)} levels")
    norm = residual.batch_norm(train, self.axis_name, self.dtype)
    level = functools.partial(ResidualLevel, num_blocks=self.num_blocks, norm=norm, dtype=self.dtype)
    x = residual.conv(self.widths[0], 3, dtype=self.dtype, name="stem_conv")(x.astype(self.dtype))
    x = nn.relu(norm(name="stem_bn")(x))
    skips = []
    for i, width in enumerate(self.widths):
      if i:
        x = nn.max_pool(x, (2, 2), (2, 2))
      x = level(width, name=f"down{i}")(x, train=train)
      skips.append(x)
    for i in reversed(range(len(self.widths) - 1)):
      x = ConvTranspose(self.widths[i], 2, 2, dtype=self.dtype, name=f"upconv{i}")(x)
      x = level(self.widths[i], name=f"up{i}")(jnp.concatenate([x, skips[i]], -1), train=train)
    x = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="classifier")(x)
    return x.astype(jnp.float32)


register_model("unet", UNet, module_options(UNet))
