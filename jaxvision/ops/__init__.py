"""Box operations, NMS, RoI pooling/align, anchors, box coding and the matching/sampling of
training examples: pure jnp, jit- and vmap-able."""

from jaxvision.ops.anchors import cell_anchors, grid_anchors, kmeans_anchors, shape_iou
from jaxvision.ops.box_coder import BBOX_XFORM_CLIP, decode_boxes, encode_boxes
from jaxvision.ops.boxes import (
    area, box_iou, clip_xyxy, clip_yxyx, cxcywh_to_xyxy, cxcywh_to_yxyx, generalized_box_iou,
    giou, iou, xyxy_to_cxcywh, xyxy_to_yxyx, yxyx_to_cxcywh, yxyx_to_xyxy)
from jaxvision.ops.nms import batched_nms, nms
from jaxvision.ops.roi import roi_align, roi_pool
from jaxvision.ops.sampling import (large_enough, match, random_rank, regression_targets,
                                    sample_balanced)
from jaxvision.ops.spp import spatial_pyramid_pool

__all__ = [
    "BBOX_XFORM_CLIP", "area", "batched_nms", "box_iou", "cell_anchors", "clip_xyxy", "clip_yxyx",
    "cxcywh_to_xyxy", "cxcywh_to_yxyx", "decode_boxes", "encode_boxes", "generalized_box_iou",
    "giou", "grid_anchors", "iou", "kmeans_anchors", "large_enough", "match", "nms",
    "random_rank", "regression_targets", "roi_align", "roi_pool", "sample_balanced", "shape_iou",
    "spatial_pyramid_pool", "xyxy_to_cxcywh", "xyxy_to_yxyx", "yxyx_to_cxcywh", "yxyx_to_xyxy",
]
