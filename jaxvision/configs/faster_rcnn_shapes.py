"""Faster R-CNN on the procedural `shapes` detection data (64x64), offline on a 2-core CPU in
under 20 minutes; reports VOC mAP@0.5 (11-point and all-point) and the COCO numbers.

A narrow ResNet (ImageNet stem, 32/64 channels) gives an 8 x 8 feature map (stride 8); the RPN
has 3 square anchors per position (12, 18, 26 pixels, centred on the cells; the shapes are
10-29 pixels, aspect ratio 0.8-1.3); RoIAlign 5 x 5, two fully connected layers of 256.
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "rcnn_detection"
  c.model.name = "faster_rcnn"
  c.model.options.backbone = "resnet"
  c.model.options.backbone_options = dict(stage_sizes=(1, 1), widths=(32, 64), stem="imagenet",
                                          stem_width=16)
  c.model.options.anchor_sizes = (12, 18, 26)
  c.model.options.aspect_ratios = (1.0,)
  c.model.options.anchor_offset = 0.5
  c.model.options.rpn_batch_size = 64
  c.model.options.rpn_pre_nms_top_n_train = 192
  c.model.options.rpn_post_nms_top_n_train = 64
  c.model.options.rpn_pre_nms_top_n_test = 192
  c.model.options.rpn_post_nms_top_n_test = 50
  c.model.options.roi_output_size = 5
  c.model.options.representation_size = 256
  c.model.options.roi_batch_size = 64
  c.dataset.name = "shapes_detection/64"
  c.batch_size = 32
  c.eval_batch_size = 100
  c.num_train_steps = 1000
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_epochs = 1.0
  c.log_every_steps = 50
  c.eval_every_steps = 250
  c.checkpoint_every_steps = 250
  c.best_metric = "map_voc07"
  return c
