"""Mask R-CNN on the procedural `shapes` data (64x64) with per-object masks, offline on a 2-core
CPU in under 20 minutes; reports the COCO mask AP (`mask_ap50`, `mask_ap`, `mask_ap75`) next to
the box metrics, and draws the instances under `workdir/instances`.

`faster_rcnn_shapes`'s detector (a narrow ResNet, stride 8; 3 square anchors; RoIAlign 5 x 5, two
fully connected layers of 256) plus a narrow mask head: RoIAlign 14 x 14 on the stride-4 map,
two 3x3 convs of 32, a 2x transpose conv to 28 x 28 and per-class mask logits, trained on 4
positive RoIs per image.
"""

from jaxvision.configs import faster_rcnn_shapes


def get_config():
  c = faster_rcnn_shapes.get_config()
  c.task = "instance_segmentation"
  c.model.name = "mask_rcnn"
  c.model.options.mask_width = 32
  c.model.options.mask_num_convs = 2
  c.model.options.mask_feature_level = 0
  c.model.options.mask_rois_per_image = 4
  c.model.options.max_detections = 16
  c.dataset.instance_masks = True
  c.num_train_steps = 500  # mask AP@0.5 0.98 at step 500 of 1,000 already
  c.eval_every_steps = 250
  c.checkpoint_every_steps = 250
  c.best_metric = "mask_ap50"
  return c
