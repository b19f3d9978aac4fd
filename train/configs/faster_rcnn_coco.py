"""Faster R-CNN on COCO 2017 (train, evaluated on val): 512 x 512 inputs, a ResNet-50 backbone
(conv4 map, stride 16), 4 anchor sizes x 3 aspect ratios, RoIAlign 7 x 7 + two 1024-wide fully
connected layers, torchvision's 26-epoch schedule (SGD 0.02 for 16 images, steps at 16 and
22); reports the 12 COCOeval numbers (`coco_AP`, ...) besides VOC-style mAP@0.5. The paper
reports 42.7 AP@0.5 / 21.9 AP on test-dev with VGG-16.
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "rcnn_detection"
  c.model.name = "faster_rcnn"
  c.model.options.backbone = "resnet50"
  c.model.options.feature_level = -2  # layer3 (conv4_x): stride 16
  c.model.options.anchor_sizes = (32, 64, 128, 256)
  c.model.options.aspect_ratios = (0.5, 1.0, 2.0)
  c.model.options.anchor_offset = 0.5
  c.dataset.name = "coco/2017"
  c.dataset.image_size = 512
  c.batch_size = 16
  c.eval_batch_size = 16
  c.num_epochs = 26.0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.02
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.step_epochs = (16 / 26, 22 / 26)
  c.optimizer.warmup_epochs = 0.1
  c.log_every_steps = 100
  c.best_metric = "coco_AP"
  return c
