"""SPP-net for detection (He et al. 2014): one convolution pass over the whole image, each
proposal's window pooled from the feature map into a fixed-length vector by a spatial pyramid.

The backbone's `feature_level` map (stride S = image size / map size) is computed once per
image; every proposal is projected onto it with the paper's corner mapping and max-pooled at
each pyramid level (`jaxvision.ops.spp.spatial_pyramid_pool`); the vector goes through the
same head as R-CNN (`jaxvision.models.rcnn.RegionDetector`: two fully connected layers, a
linear classifier over background + classes, class-specific box regression, NMS per class).

The paper fine-tuned only the layers above the pyramid pooling (the convolutions came
pre-trained on ImageNet); `train_backbone=False` does the same (the backbone in inference mode
and without gradient), the default trains everything as Fast R-CNN does, which a backbone
trained from scratch needs.
"""

from __future__ import annotations

from typing import Sequence

import jax

from jaxvision.models.rcnn import RegionDetector, detector_factory, registry_options
from jaxvision.models.registry import register_model
from jaxvision.ops.spp import spatial_pyramid_pool


class SPPNet(RegionDetector):
  """SPP-net: pyramid `levels` (bins per side) of each window on the shared feature map; the
  other attributes are `RegionDetector`'s."""
  levels: Sequence[int] = (1, 2, 4)
  train_backbone: bool = True

  def region_features(self, x, boxes, train: bool):
    maps = self.backbone(x, train=train and self.train_backbone, features=True)
    features = maps[self.feature_level]
    if not self.train_backbone:
      features = jax.lax.stop_gradient(features)
    grid, image_hw = features.shape[1:3], x.shape[1:3]
    if image_hw[0] % grid[0] or image_hw[1] % grid[1] or (
        image_hw[0] // grid[0] != image_hw[1] // grid[1]):
      raise ValueError(f"x: images of shape {tuple(x.shape)} give a {grid[0]} x {grid[1]} feature "
                       "map that they are not a common multiple of; use sizes divisible by the "
                       f"backbone's stride at feature_level={self.feature_level}")
    return spatial_pyramid_pool(features, boxes, tuple(self.levels), grid[0] / image_hw[0])


register_model("sppnet", detector_factory(SPPNet), registry_options(SPPNet))
