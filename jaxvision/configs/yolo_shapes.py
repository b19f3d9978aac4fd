"""YOLOv2 on the procedural `shapes` detection data (64x64), offline on a 2-core CPU in under
15 minutes; reports VOC mAP@0.5 (11-point and all-point) and the COCO numbers.

A narrow ResNet (ImageNet stem, 16/32/64 channels) gives a 4 x 4 grid; the 4 anchors are
k-means (1 - IoU) clusters of the training boxes from
`kmeans_anchors(detection.training_box_sizes(config.dataset), 4)` (mean best IoU 0.86 on the
shapes/64 training boxes; k-means from another start finds slightly different ones).
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "detection"
  c.model.name = "yolov2"
  c.model.options.backbone = "resnet"
  c.model.options.backbone_options = dict(stage_sizes=(1, 1, 1), widths=(16, 32, 64),
                                          stem="imagenet", stem_width=16)
  c.model.options.head_width = 64
  c.model.options.head_depth = 1
  c.model.options.anchors = ((0.156, 0.156), (0.214, 0.213), (0.275, 0.275), (0.35, 0.35))
  c.dataset.name = "shapes_detection/64"
  c.batch_size = 32
  c.eval_batch_size = 100
  c.num_train_steps = 1500
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_epochs = 1.0
  c.log_every_steps = 50
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.best_metric = "map_voc07"
  return c
