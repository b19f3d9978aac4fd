"""Classic ImageNet classifiers in torchvision's layer layout: AlexNet, VGG-11..19 (+BN), GoogLeNet.

Module names mirror torchvision's state_dict (`features.3` -> `features_3`, `inception3a.branch2.1`
-> `inception3a/branch2_1`), convolutions use torchvision's explicit symmetric padding, pooling
its floor/ceil modes and `AdaptiveAvgPool2d` bins, and the classifier flattens in torch's
(C, H, W) order, so that torchvision weights convert one to one (jaxvision.convert) and give
torchvision's outputs.

AlexNet and VGG with `features=True` are fully convolutional (Long et al. 2015): they return the
map after every max-pool, then fc6 as a k x k convolution over the pool5 map (k = the 6x6 / 7x7
of the adaptive pool, which is the identity on the training size) and fc7 as a 1x1 convolution,
with the Linear layers' own parameters; the last map is the input of the last Linear layer.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.models.registry import module_options, register_model
from jaxvision.nn import residual
from jaxvision.nn.checks import check_images

# PyTorch's default Conv2d/Linear weight init (kaiming_uniform with a=sqrt(5)).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def adaptive_avg_pool(x, output_size: tuple[int, int]):
  """torch's AdaptiveAvgPool2d on NHWC: bin i of n averages [floor(i*L/n), ceil((i+1)*L/n))."""
  for axis, n in zip((1, 2), output_size):
    length = x.shape[axis]
    if length == n:
      continue
    weights = np.zeros((n, length), np.float32)
    for i in range(n):
      start, end = (i * length) // n, -(-((i + 1) * length) // n)
      weights[i, start:end] = 1.0 / (end - start)
    spec = "oh,bhwc->bowc" if axis == 1 else "ow,bhwc->bhoc"
    x = jnp.einsum(spec, jnp.asarray(weights, x.dtype), x)
  return x


def max_pool(x, kernel: int, strides: int, padding: int = 0, ceil_mode: bool = False):
  """torch's MaxPool2d on NHWC (-inf padding), including `ceil_mode`'s extra right/bottom window."""
  pads = []
  for length in x.shape[1:3]:
    span = length + 2 * padding - kernel
    if span < 0:
      raise ValueError(f"x: the input image is too small for this model: a {kernel}x{kernel} "
                       f"max-pool meets a feature map of shape {tuple(x.shape)}")
    out = (-(-span // strides) if ceil_mode else span // strides) + 1
    if ceil_mode and (out - 1) * strides >= length + padding:
      out -= 1  # torch: the last window must start inside the input or the left padding
    pads.append((padding, (out - 1) * strides + kernel - length - padding))
  return nn.max_pool(x, (kernel, kernel), (strides, strides), padding=tuple(pads))


def torch_flatten(x):
  """torch.flatten(x, 1) of the NCHW tensor: NHWC -> [B, C*H*W] in (C, H, W) order."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def conv(features: int, kernel: int, strides: int = 1, padding: int | None = None, **kw) -> nn.Conv:
  """nn.Conv with torch's explicit symmetric padding (default kernel // 2)."""
  pad = kernel // 2 if padding is None else padding
  return nn.Conv(features, (kernel, kernel), (strides, strides), padding=((pad, pad), (pad, pad)),
                 **kw)


def same_padding(kernel: int) -> tuple[int, int]:
  """(before, after) padding that keeps a map's size under a `kernel` convolution (torch's
  padding="same": the extra pixel of an even kernel after)."""
  return (kernel - 1) // 2, kernel // 2


def dense_to_conv_kernel(kernel, window: Sequence[int]):
  """A Linear kernel [C * kh * kw, out] over torch-flattened (C, kh, kw) inputs as the HWIO kernel
  [kh, kw, C, out] of the equivalent kh x kw convolution."""
  kh, kw = window
  if kernel.ndim != 2 or kernel.shape[0] % (kh * kw):
    raise ValueError(f"kernel: expected a Linear kernel [C * {kh} * {kw}, out], got shape "
                     f"{tuple(kernel.shape)}")
  return jnp.transpose(kernel.reshape(-1, kh, kw, kernel.shape[1]), (1, 2, 0, 3))


class ConvLinear(nn.Module):
  """A Linear layer over (C, kh, kw) windows applied as a kh x kw convolution ("same" padding).

  Its parameters are the Linear layer's (`kernel` [C * kh * kw, features], `bias`), so a trained
  classifier's fc6 runs as a convolution unchanged; at a cell whose window lies inside the map
  it equals the Linear layer on that torch-flattened window.
  """
  features: int
  window: Sequence[int]
  kernel_init: Any = torch_default_init
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kh, kw = self.window
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1] * kh * kw, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    w = dense_to_conv_kernel(kernel, self.window).astype(self.dtype)
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), w, (1, 1),
                                     (same_padding(kh), same_padding(kw)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(self.dtype)


def sequential(x, layers: Sequence[tuple], prefix: str, *, train: bool, norm, dtype, kernel_init,
               dense_init, start: int = 0, maps: list | None = None):
  """Runs a torch `nn.Sequential` spec; layer i with weights is named `{prefix}_{start + i}`.

  Layers: ("conv", features, kernel, strides, padding), ("bn",), ("relu",),
  ("maxpool", kernel, strides), ("dropout", rate), ("linear", features) (over the last axis, so
  a 1x1 convolution on a map), ("conv_linear", features, window) (`ConvLinear`). With `maps` (a
  list), the output of every max-pool is appended to it.
  """
  for i, (kind, *args) in enumerate(layers):
    name = f"{prefix}_{start + i}"
    if kind == "conv":
      x = conv(*args, kernel_init=kernel_init, dtype=dtype, name=name)(x)
    elif kind == "bn":
      x = norm(name=name)(x)
    elif kind == "relu":
      x = nn.relu(x)
    elif kind == "maxpool":
      x = max_pool(x, *args)
      if maps is not None:
        maps.append(x)
    elif kind == "dropout":
      x = nn.Dropout(args[0], deterministic=not train)(x)
    elif kind == "linear":
      x = nn.Dense(args[0], kernel_init=dense_init, dtype=dtype, name=name)(x)
    elif kind == "conv_linear":
      x = ConvLinear(*args, kernel_init=dense_init, dtype=dtype, name=name)(x)
    else:
      raise ValueError(f"layers: unknown layer kind {kind!r}")
  return x


def classifier(x, blocks: Sequence[Sequence[tuple]], pool_size: tuple[int, int], *,
               features: bool, **kw):
  """AlexNet's / VGG's `classifier_*` layers after the convolutional trunk's last map `x`.

  `blocks`: the fc6, fc7 and fc8 blocks of layers (each with one "linear"). The logits: torch's
  adaptive average pool to `pool_size`, flatten and the blocks. With `features`: `[fc6, fc7]`
  maps of the fully convolutional form (fc6 a `pool_size` "same" convolution, fc7 1x1; no fc8).
  """
  if not features:
    return sequential(torch_flatten(adaptive_avg_pool(x, pool_size)),
                      [layer for block in blocks for layer in block], "classifier", **kw)
  fc6, fc7 = ([("conv_linear", args[0], pool_size) if kind == "linear" else (kind, *args)
               for kind, *args in blocks[0]], blocks[1])
  x = sequential(x, fc6, "classifier", **kw)
  return [x, sequential(x, fc7, "classifier", start=len(fc6), **kw)]


class AlexNet(nn.Module):
  """torchvision's AlexNet (the "one weird trick" variant: 64-192-384-256-256 channels).

  Attributes:
    num_classes: outputs of the last Linear layer.
    dropout: dropout rate of the classifier (uses the "dropout" rng stream).
    classifier_width: outputs of fc6 and fc7 (torchvision: 4096).
    axis_name: accepted for the training core; unused (AlexNet has no BatchNorm).
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  num_classes: int = 1000
  dropout: float = 0.5
  classifier_width: int = 4096
  axis_name: str | None = None
  dtype: Any = jnp.float32
  pool_size = (6, 6)  # the adaptive average pool before fc6 (fc6's window when convolutional)

  @nn.compact
  def __call__(self, x, *, train: bool, features: bool = False):
    """Logits [B, num_classes]; with `features=True` the maps of the three max-pools, fc6 and
    fc7 (module doc), fc8 not built."""
    check_images(x)
    kw = dict(train=train, norm=None, dtype=self.dtype, kernel_init=torch_default_init,
              dense_init=torch_default_init)
    maps = []
    x = sequential(x.astype(self.dtype), (
        ("conv", 64, 11, 4, 2), ("relu",), ("maxpool", 3, 2),
        ("conv", 192, 5, 1, 2), ("relu",), ("maxpool", 3, 2),
        ("conv", 384, 3, 1, 1), ("relu",),
        ("conv", 256, 3, 1, 1), ("relu",),
        ("conv", 256, 3, 1, 1), ("relu",), ("maxpool", 3, 2)), "features", maps=maps, **kw)
    width, drop = self.classifier_width, ("dropout", self.dropout)
    x = classifier(x, ((drop, ("linear", width), ("relu",)), (drop, ("linear", width), ("relu",)),
                       (("linear", self.num_classes),)), self.pool_size, features=features, **kw)
    return maps + x if features else x.astype(jnp.float32)


# torchvision's VGG configurations: output channels of 3x3 convolutions, "M" a 2x2 max-pool.
VGG_LAYERS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
  """torchvision's VGG: 3x3 convolutions (+BatchNorm) and 2x2 max-pools, a 7x7 adaptive average
  pool and a 4096-4096 classifier with dropout.

  Attributes:
    layers: a VGG_LAYERS configuration.
    batch_norm: BatchNorm after every convolution (torchvision's `vgg*_bn`).
    num_classes: outputs of the last Linear layer.
    dropout: dropout rate of the classifier (uses the "dropout" rng stream).
    classifier_width: outputs of fc6 and fc7 (torchvision: 4096).
    axis_name: mapped axis over which BatchNorm statistics are averaged (pmap).
    dtype: computation dtype (parameters and BatchNorm statistics stay float32).
  """
  layers: Sequence[int | str]
  batch_norm: bool = False
  num_classes: int = 1000
  dropout: float = 0.5
  classifier_width: int = 4096
  axis_name: str | None = None
  dtype: Any = jnp.float32
  pool_size = (7, 7)  # the adaptive average pool before fc6 (fc6's window when convolutional)

  @nn.compact
  def __call__(self, x, *, train: bool, features: bool = False):
    """Logits [B, num_classes]; with `features=True` the maps of the max-pools (pool1..pool5, at
    strides 2..32), fc6 and fc7 (module doc), fc8 not built."""
    check_images(x)
    trunk = []
    for v in self.layers:
      if v == "M":
        trunk.append(("maxpool", 2, 2))
      else:
        trunk += [("conv", v, 3, 1, 1)] + [("bn",)] * self.batch_norm + [("relu",)]
    kw = dict(train=train, norm=residual.batch_norm(train, self.axis_name, self.dtype),
              dtype=self.dtype, kernel_init=residual.conv_kernel_init,
              dense_init=nn.initializers.normal(0.01))
    maps = []
    x = sequential(x.astype(self.dtype), trunk, "features", maps=maps, **kw)
    width, drop = self.classifier_width, ("dropout", self.dropout)
    x = classifier(x, ((("linear", width), ("relu",), drop), (("linear", width), ("relu",), drop),
                       (("linear", self.num_classes),)), self.pool_size, features=features, **kw)
    return maps + x if features else x.astype(jnp.float32)


googlenet_init = nn.initializers.truncated_normal(0.01)  # torchvision: trunc_normal_(std=0.01)


class BasicConv(nn.Module):
  """torchvision's BasicConv2d: bias-free convolution, BatchNorm (eps 1e-3), ReLU."""
  features: int
  kernel: int
  strides: int = 1
  norm: Any = nn.BatchNorm
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = conv(self.features, self.kernel, self.strides, use_bias=False, kernel_init=googlenet_init,
             dtype=self.dtype, name="conv")(x)
    return nn.relu(self.norm(name="bn")(x))


class Inception(nn.Module):
  """Inception v1 module as in torchvision (whose "5x5" branch is a 3x3 convolution)."""
  ch1x1: int
  ch3x3red: int
  ch3x3: int
  ch5x5red: int
  ch5x5: int
  pool_proj: int
  norm: Any = nn.BatchNorm
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    block = functools.partial(BasicConv, norm=self.norm, dtype=self.dtype)
    b1 = block(self.ch1x1, 1, name="branch1")(x)
    b2 = block(self.ch3x3, 3, name="branch2_1")(block(self.ch3x3red, 1, name="branch2_0")(x))
    b3 = block(self.ch5x5, 3, name="branch3_1")(block(self.ch5x5red, 1, name="branch3_0")(x))
    b4 = block(self.pool_proj, 1, name="branch4_1")(max_pool(x, 3, 1, 1, ceil_mode=True))
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
  """Auxiliary classifier: 4x4 adaptive average pool, 1x1 conv, fc1 (1024) + dropout, fc2."""
  num_classes: int
  dropout: float = 0.7
  norm: Any = nn.BatchNorm
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = BasicConv(128, 1, norm=self.norm, dtype=self.dtype, name="conv")(adaptive_avg_pool(x, (4, 4)))
    x = nn.relu(nn.Dense(1024, kernel_init=googlenet_init, dtype=self.dtype, name="fc1")(torch_flatten(x)))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=googlenet_init, dtype=self.dtype, name="fc2")(x)


class GoogLeNetOutputs(NamedTuple):
  """Training outputs with auxiliary heads (torchvision's order); loss: l + 0.3 * (a1 + a2)."""
  logits: Any
  aux_logits2: Any
  aux_logits1: Any


# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) of each Inception module.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
  """torchvision's GoogLeNet (Inception v1 with BatchNorm).

  Attributes:
    num_classes: outputs of `fc` (and of the auxiliary heads).
    aux_logits: build the auxiliary classifiers aux1 (after 4a) and aux2 (after 4d); in
      training the model then returns GoogLeNetOutputs(logits, aux_logits2, aux_logits1), in
      evaluation the logits only (as torchvision). The fit loop's classification task expects
      plain logits: use aux heads with a custom loss, or to load checkpoints that carry them.
    transform_input: re-normalise ImageNet-normalised inputs to [-1, 1] statistics, as
      torchvision does for its pretrained weights (set True with those weights).
    dropout: dropout rate before `fc`; dropout_aux: in the auxiliary heads ("dropout" rng).
    axis_name: mapped axis over which BatchNorm statistics are averaged (pmap).
    dtype: computation dtype (parameters and BatchNorm statistics stay float32).
  """
  num_classes: int = 1000
  aux_logits: bool = False
  transform_input: bool = False
  dropout: float = 0.2
  dropout_aux: float = 0.7
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    if self.transform_input:
      if x.shape[-1] != 3:
        raise ValueError(f"x: transform_input=True expects 3 (RGB) channels, got shape {x.shape}")
      mean, std = jnp.array([0.485, 0.456, 0.406]), jnp.array([0.229, 0.224, 0.225])
      x = x * (std / 0.5) + (mean - 0.5) / 0.5
    norm = functools.partial(residual.batch_norm(train, self.axis_name, self.dtype), epsilon=1e-3)
    block = functools.partial(BasicConv, norm=norm, dtype=self.dtype)
    inception = lambda key, y: Inception(*INCEPTION[key], norm=norm, dtype=self.dtype,
                                         name=f"inception{key}")(y)
    x = block(64, 7, 2, name="conv1")(x.astype(self.dtype))
    x = max_pool(x, 3, 2, ceil_mode=True)
    x = block(192, 3, name="conv3")(block(64, 1, name="conv2")(x))
    x = max_pool(x, 3, 2, ceil_mode=True)
    x = inception("3b", inception("3a", x))
    x = inception("4a", max_pool(x, 3, 2, ceil_mode=True))
    aux = self.aux_logits and (train or self.is_initializing())
    aux_head = functools.partial(InceptionAux, self.num_classes, self.dropout_aux, norm, self.dtype)
    aux1 = aux_head(name="aux1")(x, train=train) if aux else None
    x = inception("4d", inception("4c", inception("4b", x)))
    aux2 = aux_head(name="aux2")(x, train=train) if aux else None
    x = inception("4e", x)
    x = inception("5b", inception("5a", max_pool(x, 2, 2, ceil_mode=True)))
    x = nn.Dropout(self.dropout, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
    x = nn.Dense(self.num_classes, kernel_init=googlenet_init, dtype=self.dtype, name="fc")(x)
    if aux and train:
      return GoogLeNetOutputs(*(a.astype(jnp.float32) for a in (x, aux2, aux1)))
    return x.astype(jnp.float32)


def _vgg(depth: int, batch_norm: bool, **options) -> VGG:
  return VGG(layers=VGG_LAYERS[depth], batch_norm=batch_norm, **options)


register_model("alexnet", AlexNet, module_options(AlexNet))
register_model("googlenet", GoogLeNet, module_options(GoogLeNet))
for _depth in VGG_LAYERS:
  for _bn in (False, True):
    register_model(f"vgg{_depth}{'_bn' * _bn}", functools.partial(_vgg, _depth, _bn),
                   module_options(VGG, exclude=("layers", "batch_norm")))
