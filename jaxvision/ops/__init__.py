"""Box operations and NMS: pure jnp, jit- and vmap-able."""

from jaxvision.ops.anchors import kmeans_anchors, shape_iou
from jaxvision.ops.boxes import (
    area, box_iou, clip_xyxy, clip_yxyx, cxcywh_to_xyxy, cxcywh_to_yxyx, generalized_box_iou,
    giou, iou, xyxy_to_cxcywh, xyxy_to_yxyx, yxyx_to_cxcywh, yxyx_to_xyxy)
from jaxvision.ops.nms import batched_nms, nms

__all__ = [
    "area", "batched_nms", "box_iou", "clip_xyxy", "clip_yxyx", "cxcywh_to_xyxy",
    "cxcywh_to_yxyx", "generalized_box_iou", "giou", "iou", "kmeans_anchors", "nms", "shape_iou",
    "xyxy_to_cxcywh", "xyxy_to_yxyx", "yxyx_to_cxcywh", "yxyx_to_xyxy",
]
