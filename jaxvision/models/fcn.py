"""FCN-32s, FCN-16s and FCN-8s (Long et al. 2015) on a backbone from the registry.

The backbone is any registered model whose `__call__(x, train=..., features=True)` returns its
feature maps shallow to deep (ResNet: the stem and every stage). The head takes the maps at strides
32, 16 and 8 (the lecture's pool5/pool4/pool3 level; the last map of each stride is used):

- `score_fr`: 1x1 convolution of the stride-32 map to class scores;
- FCN-16s/8s: `upscore2` (a stride-2 transpose convolution, bilinear initialised and learned)
  of the coarser scores plus `score_pool4` (1x1 of the stride-16 map, zero-initialised), then
  the same with `upscore_pool4` and `score_pool3` for FCN-8s;
- the final upsampling by 32, 16 or 8 to the input resolution: fixed bilinear interpolation
  (the paper's choice) or a learned bilinear-initialised transpose convolution.

On VGG (`backbone="vgg16"`, Long et al.'s original) the stride-32 map is fc7: VGG's `features=True`
runs fc6 as a 7x7 convolution (4096) over pool5 and fc7 as a 1x1 (4096), each with ReLU and
dropout, with the classifier's own parameters (`backbone/classifier_0`, `classifier_3`), so
torchvision VGG-16 weights load into the backbone unchanged (less fc8: `classifier_6`); the skips
are pool4 and pool3. Long et al. pad the input by 100 pixels, run fc6 unpadded and crop the
upsampled scores back to the image; here fc6 is "same"-padded (3 pixels of zeros around pool5)
instead, as torchvision's FCN keeps every map aligned with the input, so every map has exactly
the stride-32/16/8 size and no crop is needed (hence inputs divisible by 32); where fc6's 7x7
window lies inside pool5 (the centre cell on a 224x224 image) it equals the classifier's fc6.
FCN-8s VGG-16 for 21 classes has the 134,489,759 parameters of Long et al.'s caffe model with
`learn_final_upsample=True` (caffe stores its fixed 16x16 `upscore8` too), 112,896 fewer with
the fixed bilinear final upsampling. (Long et al. keep `upscore2`/`upscore_pool4` fixed in
voc-fcn8s; here they are learned from the bilinear start.)
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.models.backbones import make_backbone
from jaxvision.models.registry import register_model
from jaxvision.nn.checks import check_images
from jaxvision.nn.upsample import ConvTranspose, bilinear_upsample, upsample_geometry

VARIANTS = (32, 16, 8)


def check_divisible(x, multiple: int, model: str) -> None:
  """Raises unless the spatial size of `x` is a multiple of `multiple` (the model's total stride)."""
  height, width = x.shape[1:3]
  if height % multiple or width % multiple:
    raise ValueError(f"x: {model} restores the input resolution only for heights and widths "
                     f"divisible by {multiple}; got shape {tuple(x.shape)}")


def maps_by_stride(maps: Sequence, size: int) -> dict[int, Any]:
  """{stride: the deepest map of that stride} of a backbone's maps (shallow to deep) for inputs
  of height `size`."""
  return {size // m.shape[1]: m for m in maps}


def _score(features: int, name: str, zero: bool = False, dtype: Any = jnp.float32) -> nn.Conv:
  init = nn.initializers.zeros if zero else nn.initializers.lecun_normal()
  return nn.Conv(features, (1, 1), kernel_init=init, dtype=dtype, name=name)


class FCN(nn.Module):
  """A fully convolutional network: per-pixel logits [B, H, W, num_classes] at input resolution.

  Attributes:
    backbone: a module whose `__call__(x, *, train, features=True)` returns feature maps, shallow
      to deep.
    num_classes: output classes (background included).
    variant: 32, 16 or 8: the stride of the finest skip connection (FCN-32s/16s/8s).
    learn_final_upsample: learn the last upsampling (bilinear-initialised) instead of fixing it.
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  backbone: nn.Module
  num_classes: int
  variant: int = 8
  learn_final_upsample: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_images(x)
    if self.variant not in VARIANTS:
      raise ValueError(f"variant: expected one of {VARIANTS}, got {self.variant!r}")
    check_divisible(x, 32, f"FCN-{self.variant}s")
    maps = maps_by_stride(self.backbone(x, train=train, features=True), x.shape[1])
    missing = [s for s in VARIANTS if s >= self.variant and s not in maps]
    if missing:
      raise ValueError(f"backbone: FCN-{self.variant}s needs feature maps at strides "
                       f"{[s for s in VARIANTS if s >= self.variant]}; the backbone gives strides "
                       f"{sorted(maps)}")
    k = self.num_classes
    up2 = functools.partial(ConvTranspose, k, 4, 2, 1, use_bias=False, bilinear=True,
                            dtype=self.dtype)
    score = _score(k, "score_fr", dtype=self.dtype)(maps[32])
    if self.variant <= 16:
      score = up2(name="upscore2")(score) + _score(k, "score_pool4", True, self.dtype)(maps[16])
    if self.variant <= 8:
      score = up2(name="upscore_pool4")(score) + _score(k, "score_pool3", True, self.dtype)(maps[8])
    if self.learn_final_upsample:
      kernel, padding = upsample_geometry(self.variant)
      score = ConvTranspose(k, kernel, self.variant, padding, use_bias=False, bilinear=True,
                            dtype=self.dtype, name=f"upscore{self.variant}")(score)
    else:
      score = bilinear_upsample(score, self.variant)
    return score.astype(jnp.float32)


def _fcn(variant: int, *, num_classes: int, backbone: str = "resnet18",
         backbone_options: dict | None = None, axis_name: str | None = None,
         dtype: Any = jnp.float32, learn_final_upsample: bool = False) -> FCN:
  net = make_backbone(backbone, backbone_options, num_classes=num_classes, axis_name=axis_name,
                      dtype=dtype)
  return FCN(backbone=net, num_classes=num_classes, variant=variant,
             learn_final_upsample=learn_final_upsample, dtype=dtype)


_OPTIONS = ("num_classes", "backbone", "backbone_options", "axis_name", "dtype",
            "learn_final_upsample")
for _variant in VARIANTS:
  register_model(f"fcn{_variant}s", functools.partial(_fcn, _variant), _OPTIONS)
