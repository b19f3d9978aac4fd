"""Any CNN can be fully convolutional: a trained classifier's head as convolutions.

- A global-average-pool + Dense head (ResNet's `fc`) computes exactly a k x k "valid"
  convolution over the last k x k feature map whose kernel is the Dense kernel divided by k^2 at
  every position.
- AlexNet's and VGG's Linear layers (Long et al. 2015, the lecture's example): fc6 sees the
  torch-flattened 6x6 / 7x7 pool5 map (the adaptive average pool before it is the identity on
  the training size), so it is a 6x6 / 7x7 convolution with the Linear kernel reshaped; fc7 and
  fc8 are 1x1 convolutions.

Slid over the feature map of a larger image, the head gives a class-score map, one cell per
window (a sliding-window classifier that shares all the convolutional work); on the training
size the map has a single cell, equal to the logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.classic import AlexNet, VGG, same_padding
from jaxvision.nn.checks import check_images

CLASSIC_HEAD = "classifier_6"  # fc8 of AlexNet and VGG


class FullyConvolutional(nn.Module):
  """`classifier`'s feature extractor followed by its head as a `window` convolution.

  Attributes:
    classifier: a model whose `__call__(x, *, train, features=True)` returns its feature maps
      shallow to deep; its head classifies the last.
    num_classes: outputs of the head.
    window: (kh, kw) of the head: the last feature map's size on the training images; (1, 1)
      scores every feature-map cell.
    valid: (kh, kw) of a "same"-padded convolution inside the classifier (AlexNet's and VGG's
      fc6): the last map is cropped to the cells whose window lies inside the pool5 map, i.e. to
      that convolution's "valid" output; (1, 1) crops nothing.
  """
  classifier: nn.Module
  num_classes: int
  window: Sequence[int] = (1, 1)
  valid: Sequence[int] = (1, 1)

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    last = self.classifier(x, train=train, features=True)[-1]
    need = [max(w, v) for w, v in zip(self.window, self.valid)]
    if last.shape[1] < need[0] or last.shape[2] < need[1]:
      raise ValueError(f"x: the feature map of shape {tuple(last.shape)} is smaller than the head's "
                       f"window {tuple(need)}; expected images at least as large as the "
                       "training images")
    (top, bottom), (left, right) = (same_padding(k) for k in self.valid)
    last = last[:, top:last.shape[1] - bottom, left:last.shape[2] - right]
    head = nn.Conv(self.num_classes, tuple(self.window), padding="VALID",
                   dtype=getattr(self.classifier, "dtype", jnp.float32), name="head")
    return head(last).astype(jnp.float32)


def fully_convolutional(model: nn.Module, variables: dict,
                        image_shape: Sequence[int] | None = None):
  """Returns `(fcn_model, fcn_variables)`: `model` with its head as convolutions.

  Args:
    model: a classifier whose `__call__(x, train=..., features=True)` returns its feature maps:
      the ResNet family (a global average pool and a Dense layer named `fc`), AlexNet or VGG
      (with or without BatchNorm: fc6 a 6x6 / 7x7 convolution, fc7 and fc8 1x1).
    variables: the trained classifier's variables.
    image_shape: (H, W, C) of the training images. ResNet family: given, the head becomes a
      k x k convolution, k x k the size of the last feature map of such an image, so its score
      map on a training-size image is one cell, the logits; None, a 1x1 convolution (a score per
      feature-map cell, whose mean is the logits). AlexNet / VGG: the window is fc6's; given, it
      is checked that such images give the 6x6 / 7x7 pool5 map on which the two are equal.

  Returns:
    A module whose `apply(fcn_variables, x, train=False)` gives class scores [B, h, w, classes].
  """
  params = variables.get("params", {})
  if isinstance(model, (AlexNet, VGG)):
    return _classic(model, variables, image_shape)
  fc = params.get("fc")
  if not isinstance(fc, Mapping) or set(fc) != {"kernel", "bias"} or fc["kernel"].ndim != 2:
    raise ValueError(f"model: expected a classifier with a global-average-pool + Dense head "
                     f"named 'fc' (the ResNet family), AlexNet or VGG; got {type(model).__name__} "
                     f"with parameters {sorted(params)}")
  kernel, bias = fc["kernel"], fc["bias"]
  window = (1, 1)
  if image_shape is not None:
    last = _feature_maps(model, variables, image_shape)[-1]
    window = last.shape[1:3]
    if last.shape[-1] != kernel.shape[0]:
      raise ValueError(f"model: its last feature map has {last.shape[-1]} channels, the fc kernel "
                       f"expects {kernel.shape[0]}")
  conv_kernel = jnp.broadcast_to(kernel / (window[0] * window[1]), (*window, *kernel.shape))
  net = FullyConvolutional(classifier=model, num_classes=kernel.shape[1], window=tuple(window))
  return net, _with_head(variables, "fc", conv_kernel, bias)


def _classic(model, variables, image_shape):
  """AlexNet / VGG: the classifier's own fully convolutional form (`features=True`: fc6 a
  "same" convolution, cropped here to its valid cells, fc7 1x1) and fc8 as a 1x1 head."""
  fc8 = variables.get("params", {}).get(CLASSIC_HEAD)
  if not isinstance(fc8, Mapping) or set(fc8) != {"kernel", "bias"} or fc8["kernel"].ndim != 2:
    raise ValueError(f"variables: expected {type(model).__name__}'s parameters with the Linear "
                     f"head {CLASSIC_HEAD!r}; got {sorted(variables.get('params', {}))}")
  if image_shape is not None:
    pool5 = _feature_maps(model, variables, image_shape)[-3].shape[1:3]  # before fc6, fc7
    if tuple(pool5) != tuple(model.pool_size):
      raise ValueError(f"image_shape: {tuple(image_shape)} gives a {pool5[0]}x{pool5[1]} pool5 map; "
                       f"{type(model).__name__}'s fc6 is a {model.pool_size[0]}x"
                       f"{model.pool_size[1]} convolution only where the adaptive average pool is "
                       f"the identity: expected training images that give a "
                       f"{model.pool_size[0]}x{model.pool_size[1]} map (224x224 for torchvision's)")
  net = FullyConvolutional(classifier=model, num_classes=fc8["kernel"].shape[1],
                           valid=tuple(model.pool_size))
  return net, _with_head(variables, CLASSIC_HEAD, fc8["kernel"][None, None], fc8["bias"])


def _with_head(variables, head: str, kernel, bias) -> dict:
  """The classifier's variables under `classifier`, less `head`, and the conv `head`."""
  new_vars = {col: {"classifier": tree} for col, tree in variables.items() if col != "params"}
  new_vars["params"] = {"classifier": {k: v for k, v in variables["params"].items() if k != head},
                        "head": {"kernel": kernel, "bias": bias}}
  return new_vars


def _feature_maps(model, variables, image_shape) -> list:
  """The abstract feature maps of one `image_shape` image."""
  image_shape = tuple(image_shape)
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f"image_shape: expected (H, W, C) of the training images, got {image_shape!r}")
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  return jax.eval_shape(lambda v, im: model.apply(v, im, train=False, features=True), variables, x)
