"""YOLOv2 (Redmon & Farhadi 2017) on PASCAL VOC 2007+2012 trainval, tested on VOC2007 test:
416 x 416 inputs, a ResNet-50 backbone (stride 32: a 13 x 13 grid) and the paper's 5 VOC
k-means anchors (yolo-voc.cfg). The paper reaches 76.8 mAP at 416 with Darknet-19.
"""

from jaxvision.models.yolo import VOC_ANCHORS
from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "detection"
  c.model.name = "yolov2"
  c.model.options.backbone = "resnet50"
  c.model.options.anchors = VOC_ANCHORS
  c.model.options.grid_size = 13
  c.model.options.head_width = 1024
  c.model.options.head_depth = 2
  c.dataset.name = "voc/2007+2012"
  c.dataset.image_size = 416
  c.batch_size = 64
  c.eval_batch_size = 64
  c.num_epochs = 160.0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "step"
  c.optimizer.step_epochs = (60 / 160, 90 / 160)
  c.optimizer.warmup_epochs = 2.0
  c.log_every_steps = 100
  c.best_metric = "map_voc07"
  return c
