"""Neural-ODE classifiers: Chen et al.'s MNIST ODE-Net, ODE-ResNets, and the depth-study network.

`ODENet` is a stem, a middle that integrates `dh/dt = f(t, h)` over [0, T] with Chen et al.'s
vector field f (`ODEFunc`), and a GroupNorm-ReLU-pool-Dense head. The middle is

  "ode":       an `ODEBlock` (diffrax, any solver and tolerance);
  "residual":  a `ResidualStage` of N blocks `Y_{j+1} = Y_j + h * f(t_j, Y_j)`, h = T / N, no
               ReLU after the sum, each block with its own f or all sharing one.

With shared weights the residual stage IS explicit Euler on the ODE block's vector field
(`ode_twin` maps one onto the other), so N -> infinity is the question "what happens with more
layers and smaller steps?" that jaxvision.analysis.depth_study answers.

`ODEResNet` replaces each stage of identical blocks of a ResNet config by an ODE block over
[0, T] whose f is the stage's residual branch with GroupNorm (the continuous limit of the stage
with `share_weights=True`, `step_size=T/N`).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.registry import create_model, module_options, register_model
from jaxvision.models.resnet import ResNet
from jaxvision.nn import residual
from jaxvision.nn.checks import check_images
from jaxvision.nn.ode import (OPTION_NAMES, ODEBlock, ODEFunc, ODEOptions, augment_channels,
                              biased_conv, group_norm, split_ode_options)
from jaxvision.nn.residual import BasicBranch, BottleneckBranch, ResidualBlock, ResidualStage

MIDDLES = ("ode", "residual")


class ODENet(nn.Module):
  """Chen et al.'s ODE-Net layout with an ODE block or a residual stage as its middle.

  Attributes:
    num_classes: size of the Dense head.
    width: channels of the stem and of the ODE state (before augmentation).
    downsampling: GN-ReLU-4x4/2 convolutions after the stem's first 3x3 (valid) convolution
      (Chen et al.: 2, 28x28 -> 6x6).
    middle: "ode" or "residual" (see the module docstring).
    num_blocks: N, the residual stage's blocks (step h = t1 / N).
    share_weights: one f for every block of the residual stage (explicit Euler on the ODE).
    t1: T, the end time of the middle's integration from 0.
    time_dependent: f sees t as an extra channel of its convolutions (ConcatConv2d).
    groups: GroupNorm groups (at most) inside f and in the stem and head.
    conv_impl: how f's convolutions run: "xla", "patches" (im2col; None: on CPU, where XLA's
      convolution backward pass inside the solver's loop is 10-60x slower).
    augment: zero channels appended to the state before the middle (ANODE).
    ode: how the "ode" middle integrates (`ODEOptions`; flat options in `create_model`).
    remat: rematerialise the residual blocks in the backward pass.
    scan_unroll: residual blocks per compiled scan iteration (None: all on CPU).
    axis_name: accepted for the training loop's sake; unused (no BatchNorm).
    dtype: computation dtype (parameters and logits stay float32).
  """
  num_classes: int = 10
  width: int = 64
  downsampling: int = 2
  middle: str = "ode"
  num_blocks: int = 1
  share_weights: bool = True
  t1: float = 1.0
  time_dependent: bool = True
  groups: int = 32
  conv_impl: str | None = None
  augment: int = 0
  ode: ODEOptions = ODEOptions()
  remat: bool = False
  scan_unroll: int | None = None
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train  # no BatchNorm, no dropout
    check_images(x)
    x = biased_conv(self.width, 3, dtype=self.dtype, name="conv1")(x.astype(self.dtype))
    for i in range(self.downsampling):
      x = nn.relu(group_norm(self.width, self.groups, self.dtype, f"norm{i + 1}")(x))
      x = biased_conv(self.width, 4, 2, padding=1, dtype=self.dtype, name=f"conv{i + 2}")(x)
    x = augment_channels(x, self.augment)
    x = self._middle()(x)
    x = nn.relu(group_norm(x.shape[-1], self.groups, self.dtype, "head_norm")(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(jnp.mean(x, axis=(1, 2)))
    return x.astype(jnp.float32)

  def _middle(self) -> Callable:
    f = functools.partial(ODEFunc, time_dependent=self.time_dependent, groups=self.groups,
                          dtype=self.dtype, conv_impl=self.conv_impl)
    if self.middle == "ode":
      return ODEBlock(f, t0=0.0, t1=self.t1, options=self.ode, name="middle")
    if self.middle == "residual":
      if not (isinstance(self.num_blocks, int) and self.num_blocks >= 1):
        raise ValueError(f"num_blocks: expected an int >= 1, got {self.num_blocks!r}")
      block = dict(branch=f, out_features=self.width + self.augment,
                   step_size=self.t1 / self.num_blocks, post_activation=False, time_input=True,
                   dtype=self.dtype)
      stage = ResidualStage(block, self.num_blocks, share_weights=self.share_weights,
                            remat=self.remat, scan_unroll=self.scan_unroll, name="middle")
      return functools.partial(stage, train=False)
    raise ValueError(f"middle: expected one of {MIDDLES}, got {self.middle!r}")


def ode_twin(model: ODENet, params: dict, options: ODEOptions) -> tuple[ODENet, dict]:
  """The "ode" ODENet with the same f as a shared-weight "residual" one, and its parameters.

  The residual stage of `model` is then exactly `model.num_blocks` explicit Euler steps of
  the twin's ODE block.
  """
  if model.middle != "residual" or not model.share_weights:
    raise ValueError("model: expected an ODENet with middle='residual' and share_weights=True, "
                     f"got middle={model.middle!r}, share_weights={model.share_weights}")
  f = params["middle"]["blocks"]["block"]["branch"]
  return model.clone(middle="ode", ode=options), {**params, "middle": {"f": f}}


class ODEResNet(nn.Module):
  """A ResNet whose stages of identical blocks are ODE blocks over [0, t1].

  A stage keeps its transition block (stride 2 and/or more channels, BatchNorm, as in the
  ResNet); its identical blocks become one ODE block whose vector field is the residual branch
  with GroupNorm in place of BatchNorm, followed by a ReLU (the ResNet's blocks end in one).

  Attributes: those of `ResNet` (architecture, axis_name, dtype) and of `ODENet` (t1,
  time_dependent, groups, ode).
  """
  stage_sizes: Sequence[int]
  widths: Sequence[int]
  num_classes: int = 1000
  bottleneck: bool = False
  stem: str = "imagenet"
  stem_width: int = 64
  shortcut: str = "projection"
  t1: float = 1.0
  time_dependent: bool = False
  groups: int = 32
  ode: ODEOptions = ODEOptions()
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    norm = residual.batch_norm(train, self.axis_name, self.dtype)
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = residual.conv(self.stem_width, 7, 2, dtype=self.dtype, name="conv1")(x)
      x = nn.max_pool(nn.relu(norm(name="bn1")(x)), (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    elif self.stem == "cifar":
      x = nn.relu(norm(name="bn1")(residual.conv(self.stem_width, 3, dtype=self.dtype,
                                                 name="conv1")(x)))
    else:
      raise ValueError(f"stem: expected 'imagenet' or 'cifar', got {self.stem!r}")

    branch_cls = BottleneckBranch if self.bottleneck else BasicBranch
    for i, (n, width) in enumerate(zip(self.stage_sizes, self.widths)):
      out = width * branch_cls.expansion
      strides = 1 if i == 0 else 2
      if strides != 1 or x.shape[-1] != out:
        branch = functools.partial(branch_cls, features=width, strides=strides, norm=norm,
                                   dtype=self.dtype)
        x = ResidualBlock(branch=branch, out_features=out, strides=strides, shortcut=self.shortcut,
                          norm=norm, dtype=self.dtype, name=f"layer{i + 1}_transition")(
                              x, 1.0, train)
        n -= 1
      if n > 0:
        gn = functools.partial(nn.GroupNorm, num_groups=math.gcd(self.groups, width),
                               epsilon=1e-5, dtype=self.dtype)
        branch = functools.partial(branch_cls, features=width, norm=gn, dtype=self.dtype)
        field = functools.partial(BranchField, branch=branch, time_dependent=self.time_dependent)
        # A ReLU ends the stage, as the ResNet's last block does. Without it, GroupNorm in f
        # (zero mean over each group's pixels) hides the ODE block from the global pool: the
        # pooled h(T) of a last stage differs from the pooled h(0) only through the biases.
        x = nn.relu(ODEBlock(field, t1=self.t1, options=self.ode, name=f"layer{i + 1}")(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(jnp.mean(x, axis=(1, 2)))
    return x.astype(jnp.float32)


class BranchField(nn.Module):
  """A residual branch G as a vector field f(t, h) = G(h) (or G([t, h]) when time-dependent)."""
  branch: Callable[..., nn.Module]
  time_dependent: bool = False

  @nn.compact
  def __call__(self, t, h):
    if self.time_dependent:
      h = jnp.concatenate([jnp.broadcast_to(jnp.asarray(t, h.dtype), (*h.shape[:-1], 1)), h], -1)
    return self.branch(name="branch")(h)


def _with_ode_options(cls: type[nn.Module], **fixed) -> Callable[..., nn.Module]:
  """A factory taking flat ODEOptions keys next to the module's own options."""

  def factory(**options):
    ode, rest = split_ode_options(options)
    return cls(ode=ode, **fixed, **rest)

  return factory


_ARCHITECTURE = ("stage_sizes", "widths", "bottleneck", "stem", "stem_width", "shortcut")


def _ode_resnet(base: str = "cifar_resnet20", num_classes: int = 1000, **options) -> ODEResNet:
  """`base` (a registered ResNet: resnet18..152, cifar_resnet20..1202) with ODE-block stages;
  any of its architecture keys (stage_sizes, widths, ...) may be overridden, e.g. one stage
  `stage_sizes=(1,), widths=(16,), stem_width=16` (the depth study's ODE limit of one stage)."""
  ref = create_model(base, num_classes=num_classes)
  if not isinstance(ref, ResNet):
    raise ValueError(f"base: expected a ResNet model name, got {base!r} ({type(ref).__name__})")
  arch = {k: options.pop(k, getattr(ref, k)) for k in _ARCHITECTURE}
  return _with_ode_options(ODEResNet, **arch)(num_classes=num_classes, **options)


_CHEN = dict(width=64, downsampling=2, middle="ode")
_ODENET_OPTIONS = module_options(ODENet, exclude=("ode",)) | OPTION_NAMES
register_model("odenet", _with_ode_options(ODENet), _ODENET_OPTIONS)
register_model("odenet_mnist", _with_ode_options(ODENet, **_CHEN),
               _ODENET_OPTIONS - set(_CHEN) - {"num_blocks", "share_weights", "remat", "scan_unroll"})
register_model("ode_resnet", _ode_resnet,
               module_options(ODEResNet, exclude=("ode",)) | OPTION_NAMES | {"base"})
