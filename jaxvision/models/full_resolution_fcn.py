"""A fully convolutional network that never downsamples: the lecture's "design a network as a
bunch of convolutional layers to make predictions for pixels all at once", at the original
resolution, which it calls "very expensive".

`depth` 3x3 convolutions (each BatchNorm, ReLU) of `width` channels at the input's resolution and
a 1x1 classifier: a receptive field of 2 * depth + 1 pixels, every layer paid for at every pixel.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.registry import module_options, register_model
from jaxvision.nn import residual
from jaxvision.nn.checks import check_images


class FullResolutionFCN(nn.Module):
  """`depth` same-padded 3x3 conv-BN-ReLU layers at full resolution, then per-pixel logits.

  Attributes:
    num_classes: output classes (background included).
    width: channels of every layer.
    depth: number of 3x3 layers (>= 1); the receptive field is 2 * depth + 1 pixels.
    axis_name: mapped axis over which BatchNorm statistics are averaged (pmap).
    dtype: computation dtype (parameters and BatchNorm statistics stay float32).
  """
  num_classes: int
  width: int = 32
  depth: int = 8
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    if self.depth < 1 or self.width < 1:
      raise ValueError(f"depth, width: expected >= 1, got depth={self.depth}, width={self.width}")
    norm = residual.batch_norm(train, self.axis_name, self.dtype)
    x = x.astype(self.dtype)
    for i in range(self.depth):
      x = residual.conv(self.width, 3, dtype=self.dtype, name=f"conv{i + 1}")(x)
      x = nn.relu(norm(name=f"bn{i + 1}")(x))
    x = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="classifier")(x)
    return x.astype(jnp.float32)


register_model("full_resolution_fcn", FullResolutionFCN, module_options(FullResolutionFCN))
