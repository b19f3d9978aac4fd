"""A small unpadded CNN classifier for sliding windows (OverFeat's setting).

Every convolution and max-pool is "valid" (no padding), so each cell of the last feature map
depends only on the pixels of its receptive field. Made fully convolutional
(`jaxvision.models.fully_convolutional`) and run on a larger image, the score map's cell (i, j)
is then exactly the classifier's output on the input-size window at (i * S, j * S), S the total
stride 2^(stages - 1): a crop classifier and its fully convolutional form agree on every window.
A zero-padded network (ResNet) does not: its border cells see padding in a crop and the
neighbouring pixels in the large image.

Stage i: (a 2x2/2 max-pool unless i == 0), a k x k valid convolution, BatchNorm, ReLU. The head
(`fc`) is a global average pool and a Dense layer, as `fully_convolutional` expects.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.registry import module_options, register_model
from jaxvision.nn import residual
from jaxvision.nn.checks import check_images


class WindowCNN(nn.Module):
  """Unpadded conv stages and a pooled Dense head.

  Attributes:
    widths: output channels of each stage.
    kernel_size: side of every convolution.
    num_classes: outputs of the head (e.g. background + object classes).
    axis_name: mapped axis over which BatchNorm statistics are averaged (pmap).
    dtype: computation dtype (parameters and BatchNorm statistics stay float32).
  """
  widths: Sequence[int] = (16, 32, 64)
  kernel_size: int = 3
  num_classes: int = 4
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, features: bool = False):
    """Logits [B, num_classes]; with `features=True` the map of every stage, shallow to deep."""
    check_images(x)
    norm = residual.batch_norm(train, self.axis_name, self.dtype)
    k, size = self.kernel_size, tuple(x.shape[1:3])
    x = x.astype(self.dtype)
    maps = []
    for i, width in enumerate(self.widths):
      if i:
        x = nn.max_pool(x, (2, 2), (2, 2))
      if x.shape[1] < k or x.shape[2] < k:
        raise ValueError(f"x: images of shape {size} are too small for "
                         f"{len(self.widths)} unpadded {k}x{k} stages (stage {i + 1} meets a "
                         f"{x.shape[1]}x{x.shape[2]} map)")
      x = nn.Conv(width, (k, k), padding="VALID", use_bias=False, dtype=self.dtype,
                  kernel_init=residual.conv_kernel_init, name=f"conv{i + 1}")(x)
      x = nn.relu(norm(name=f"bn{i + 1}")(x))
      maps.append(x)
    if features:
      return maps
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


register_model("window_cnn", WindowCNN, module_options(WindowCNN))
