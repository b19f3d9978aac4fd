"""Any CNN can be fully convolutional: a trained classifier's Dense head as a convolution.

A classifier that global-average-pools its last k x k feature map and applies a Dense layer
(ResNet's `fc`) computes exactly a k x k "valid" convolution whose kernel is the Dense kernel
divided by k^2 at every position. Slid over the feature map of a larger image, that convolution
gives a class-score map, one cell per k x k window (a sliding-window classifier that shares all
the convolutional work); on the training size the map has a single cell, equal to the logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.nn.checks import check_images


class FullyConvolutional(nn.Module):
  """`classifier`'s feature extractor followed by its head as a `window` convolution.

  Attributes:
    classifier: a model whose `__call__(x, *, train, features=True)` returns its feature maps
      shallow to deep; its head pools and classifies the last.
    num_classes: outputs of the head.
    window: (kh, kw) of the head: the last feature map's size on the training images; (1, 1)
      scores every feature-map cell (their mean over the map is the classifier's logits).
  """
  classifier: nn.Module
  num_classes: int
  window: Sequence[int] = (1, 1)

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    maps = self.classifier(x, train=train, features=True)
    last = maps[-1]
    if last.shape[1] < self.window[0] or last.shape[2] < self.window[1]:
      raise ValueError(f"x: the feature map of shape {tuple(last.shape)} is smaller than the head's "
                       f"window {tuple(self.window)}; expected images at least as large as the "
                       "training images")
    head = nn.Conv(self.num_classes, tuple(self.window), padding="VALID",
                   dtype=getattr(self.classifier, "dtype", jnp.float32), name="head")
    return head(last).astype(jnp.float32)


def fully_convolutional(model: nn.Module, variables: dict,
                        image_shape: Sequence[int] | None = None):
  """Returns `(fcn_model, fcn_variables)`: `model` with its Dense head as a convolution.

  Args:
    model: a classifier whose head is a global average pool and a Dense layer named `fc`, and
      whose `__call__(x, train=..., features=True)` returns its feature maps (the ResNet family).
    variables: the trained classifier's variables.
    image_shape: (H, W, C) of the training images. Given, the head becomes a k x k convolution,
      k x k the size of the last feature map of such an image: its score map on a training-size
      image is one cell, the logits. None: a 1x1 convolution (a score per feature-map cell).

  Returns:
    A module whose `apply(fcn_variables, x, train=False)` gives class scores [B, h, w, classes].
  """
  params = variables.get("params", {})
  fc = params.get("fc")
  if not isinstance(fc, Mapping) or set(fc) != {"kernel", "bias"} or fc["kernel"].ndim != 2:
    raise ValueError(f"model: expected a classifier with a global-average-pool + Dense head named "
                     f"'fc' (the ResNet family); got {type(model).__name__} with parameters "
                     f"{sorted(params)}")
  kernel, bias = fc["kernel"], fc["bias"]
  num_classes = kernel.shape[1]
  window = (1, 1) if image_shape is None else _feature_size(model, variables, tuple(image_shape))
  conv_kernel = jnp.broadcast_to(kernel / (window[0] * window[1]), (*window, *kernel.shape))
  net = FullyConvolutional(classifier=model, num_classes=num_classes, window=window)
  new_vars = {col: {"classifier": tree} for col, tree in variables.items() if col != "params"}
  new_vars["params"] = {"classifier": {k: v for k, v in params.items() if k != "fc"},
                        "head": {"kernel": conv_kernel, "bias": bias}}
  return net, new_vars


def _feature_size(model, variables, image_shape) -> tuple[int, int]:
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f"image_shape: expected (H, W, C) of the training images, got {image_shape!r}")
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  maps = jax.eval_shape(lambda v, im: model.apply(v, im, train=False, features=True), variables, x)
  last = maps[-1]
  fan_in = variables["params"]["fc"]["kernel"].shape[0]
  if last.shape[-1] != fan_in:
    raise ValueError(f"model: its last feature map has {last.shape[-1]} channels, the fc kernel "
                     f"expects {fan_in}")
  return tuple(last.shape[1:3])
