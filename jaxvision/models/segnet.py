"""An encoder-decoder with corresponding pairs of downsampling and upsampling layers (SegNet,
Badrinarayanan et al. 2017; DeconvNet, Noh et al. 2015): every 2x2 max-pool of the encoder
remembers where its maxima were, and the mirrored decoder level max-unpools to those positions.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.fcn import check_divisible
from jaxvision.models.registry import module_options, register_model
from jaxvision.nn import residual
from jaxvision.nn.checks import check_images
from jaxvision.nn.upsample import max_pool_with_argmax, max_unpool


class SegNet(nn.Module):
  """SegNet-style encoder-decoder with max-unpooling.

  Attributes:
    num_classes: output classes (background included).
    widths: channels of each encoder level (each ends with a 2x2 max-pool), finest first.
    convs_per_level: 3x3 conv-BN-ReLU layers per level, in the encoder and the decoder.
    axis_name: mapped axis over which BatchNorm statistics are averaged (pmap).
    dtype: computation dtype (parameters and BatchNorm statistics stay float32).
  """
  num_classes: int
  widths: Sequence[int] = (32, 64, 128)
  convs_per_level: int = 2
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    if not self.widths or self.convs_per_level < 1:
      raise ValueError(f"widths, convs_per_level: expected at least 1 level and 1 conv per level, "
                       f"got widths={tuple(self.widths)}, convs_per_level={self.convs_per_level}")
    check_divisible(x, 2 ** len(self.widths), f"SegNet with {len(self.widths)} pooling layers")
    norm = residual.batch_norm(train, self.axis_name, self.dtype)

    def conv_bn_relu(x, features, name):
      x = residual.conv(features, 3, dtype=self.dtype, name=f"{name}_conv")(x)
      return nn.relu(norm(name=f"{name}_bn")(x))

    x = x.astype(self.dtype)
    pools = []
    for i, width in enumerate(self.widths):
      for j in range(self.convs_per_level):
        x = conv_bn_relu(x, width, f"enc{i}_{j}")
      size = x.shape[1:3]
      x, indices = max_pool_with_argmax(x)
      pools.append((indices, size))
    for i in reversed(range(len(self.widths))):
      indices, size = pools[i]
      x = max_unpool(x, indices, size)
      for j in range(self.convs_per_level):
        last = j == self.convs_per_level - 1
        out = self.widths[max(i - 1, 0)] if last else self.widths[i]
        x = conv_bn_relu(x, out, f"dec{i}_{j}")
    x = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="classifier")(x)
    return x.astype(jnp.float32)


register_model("segnet", SegNet, module_options(SegNet))
