"""The ResNet family: ImageNet ResNet-18..152 (torchvision v1.5 layout) and CIFAR ResNet-20..1202.

Each stage is an optional transition block (stride 2 and/or more channels, with a projection or
padding shortcut) followed by a `ResidualStage`: a scan over identical blocks
`Y_{j+1} = relu(Y_j + h * G(Y_j, theta_j))`.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.registry import module_options, register_model
from jaxvision.nn import residual
from jaxvision.nn.checks import check_images
from jaxvision.nn.residual import BasicBranch, BottleneckBranch, ResidualBlock, ResidualStage


class ResNet(nn.Module):
  """A residual network as a sequence of residual stages.

  Attributes:
    stage_sizes: blocks per stage.
    widths: branch width per stage (output channels are width * branch expansion).
    num_classes: size of the Dense head.
    bottleneck: bottleneck (1x1-3x3-1x1) instead of basic (3x3-3x3) branches.
    stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3 conv).
    stem_width: channels of the stem.
    shortcut: transition-block shortcut, "projection" (option B) or "pad" (option A); "none"
      builds He et al.'s plain network (the same layers, no skip in any block).
    step_size: h in Y + h * G(Y).
    share_weights: one theta per stage for the scanned identical blocks.
    stochastic_depth: drop whole blocks in training (Huang et al. 2016).
    final_survival_prob: p_L of the linear decay over all the network's blocks.
    remat: rematerialise each block in the backward pass.
    scan: scan identical blocks (True) or unroll them.
    scan_unroll: blocks per compiled scan iteration (None: all on CPU, 1 on GPU/TPU).
    zero_init_residual: initialise the last BN scale of each branch to zero.
    axis_name: mapped axis over which BatchNorm statistics are averaged (pmap).
    dtype: computation dtype (parameters and BatchNorm statistics stay float32).
  """
  stage_sizes: Sequence[int]
  widths: Sequence[int]
  num_classes: int = 1000
  bottleneck: bool = False
  stem: str = "imagenet"
  stem_width: int = 64
  shortcut: str = "projection"
  step_size: float = 1.0
  share_weights: bool = False
  stochastic_depth: bool = False
  final_survival_prob: float = 0.5
  remat: bool = False
  scan: bool = True
  scan_unroll: int | None = None
  zero_init_residual: bool = False
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, features: bool = False):
    """Logits [B, num_classes]; with `features=True`, instead the feature maps of the stem and of
    every stage, shallow to deep, as a list (for segmentation heads; no Dense head is built)."""
    check_images(x)
    norm = residual.batch_norm(train, self.axis_name, self.dtype)
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = residual.conv(self.stem_width, 7, 2, dtype=self.dtype, name="conv1")(x)
      x = nn.relu(norm(name="bn1")(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    elif self.stem == "cifar":
      x = residual.conv(self.stem_width, 3, dtype=self.dtype, name="conv1")(x)
      x = nn.relu(norm(name="bn1")(x))
    else:
      raise ValueError(f"stem: expected 'imagenet' or 'cifar', got {self.stem!r}")
    maps = [x]

    probs = self._survival_probs()
    branch_cls = BottleneckBranch if self.bottleneck else BasicBranch
    first = 0
    for i, (n, width) in enumerate(zip(self.stage_sizes, self.widths)):
      stage_probs = probs[first:first + n]
      first += n
      out = width * branch_cls.expansion
      block = dict(out_features=out, step_size=self.step_size, shortcut=self._stage_shortcut(),
                   stochastic_depth=self.stochastic_depth, norm=norm, dtype=self.dtype)
      branch = functools.partial(branch_cls, features=width, norm=norm, dtype=self.dtype,
                                 zero_init_last=self.zero_init_residual)
      strides = 1 if i == 0 else 2
      if strides != 1 or x.shape[-1] != out:
        x = ResidualBlock(**dict(block, shortcut=self.shortcut), strides=strides,
                          branch=functools.partial(branch, strides=strides),
                          name=f"layer{i + 1}_transition")(x, stage_probs[0], train)
        stage_probs = stage_probs[1:]
      x = ResidualStage(dict(block, branch=branch), len(stage_probs), tuple(stage_probs),
                        share_weights=self.share_weights, remat=self.remat, scan=self.scan,
                        scan_unroll=self.scan_unroll, name=f"layer{i + 1}")(x, train=train)
      maps.append(x)
    if features:
      return maps

    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return x.astype(jnp.float32)

  def _stage_shortcut(self) -> str:
    """Inside a stage the skip is the identity, or nothing in a plain network."""
    return "none" if self.shortcut == "none" else "identity"

  def _survival_probs(self) -> list[float]:
    total = sum(self.stage_sizes)
    if not self.stochastic_depth:
      return [1.0] * total
    return residual.linear_survival_probs(total, self.final_survival_prob)


_IMAGENET = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}

_CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)


def _imagenet_resnet(depth: int, **options) -> ResNet:
  sizes, bottleneck = _IMAGENET[depth]
  return ResNet(stage_sizes=sizes, widths=(64, 128, 256, 512), bottleneck=bottleneck,
                stem="imagenet", stem_width=64, **options)


def _cifar_resnet(depth: int, shortcut: str = "pad", **options) -> ResNet:
  """He et al. 2015 section 4.2: 6n+2 layers, 3 stages of n basic blocks, 16/32/64 filters."""
  n = (depth - 2) // 6
  return ResNet(stage_sizes=(n, n, n), widths=(16, 32, 64), bottleneck=False, stem="cifar",
                stem_width=16, shortcut=shortcut, **options)


_ARCHITECTURE = ("stage_sizes", "widths", "bottleneck", "stem", "stem_width")
_OPTIONS = module_options(ResNet, exclude=_ARCHITECTURE)

# Any architecture (stage_sizes, widths, bottleneck, stem, stem_width all options), e.g. a
# narrow backbone for CPU-sized segmentation models.
register_model("resnet", ResNet, module_options(ResNet))
for _depth in _IMAGENET:
  register_model(f"resnet{_depth}", functools.partial(_imagenet_resnet, _depth), _OPTIONS)
for _depth in _CIFAR_DEPTHS:
  register_model(f"cifar_resnet{_depth}", functools.partial(_cifar_resnet, _depth), _OPTIONS)
