"""Faster R-CNN (Ren et al. 2015) on PASCAL VOC 2007+2012 trainval, tested on VOC2007 test:
512 x 512 inputs, a ResNet-50 backbone whose conv4 map (stride 16, the paper's) feeds the RPN
(3 scales x 3 aspect ratios) and RoIAlign 7 x 7 + two 1024-wide fully connected layers; the
four losses trained jointly (approximate joint training), SGD as torchvision's reference
(0.02 for 16 images). The paper reaches 73.2 mAP with VGG-16 (07+12).
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "rcnn_detection"
  c.model.name = "faster_rcnn"
  c.model.options.backbone = "resnet50"
  c.model.options.feature_level = -2  # layer3 (conv4_x): stride 16
  c.model.options.anchor_sizes = (64, 128, 256)
  c.model.options.aspect_ratios = (0.5, 1.0, 2.0)
  c.model.options.anchor_offset = 0.5
  c.dataset.name = "voc/2007+2012"
  c.dataset.image_size = 512
  c.batch_size = 16
  c.eval_batch_size = 16
  c.num_epochs = 20.0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.02
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.step_epochs = (15 / 20,)
  c.optimizer.warmup_epochs = 0.5
  c.log_every_steps = 100
  c.best_metric = "map_voc07"
  return c
