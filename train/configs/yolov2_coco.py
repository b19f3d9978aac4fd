"""YOLOv2 on COCO 2017 (train, evaluated on val): 416 x 416 inputs, a ResNet-50 backbone
(13 x 13 grid) and YOLOv2's 5 COCO anchors (yolo.cfg); reports the 12 COCOeval numbers
(`coco_AP`, `coco_AP50`, ...) besides VOC-style mAP@0.5. The paper reports 21.6 AP on
test-dev with Darknet-19.
"""

from jaxvision.training.config import default_config

COCO_ANCHORS = tuple((w / 13, h / 13) for w, h in (
    (0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434), (7.88282, 3.52778),
    (9.77052, 9.16828)))


def get_config():
  c = default_config()
  c.task = "detection"
  c.model.name = "yolov2"
  c.model.options.backbone = "resnet50"
  c.model.options.anchors = COCO_ANCHORS
  c.model.options.grid_size = 13
  c.model.options.head_width = 1024
  c.model.options.head_depth = 2
  c.dataset.name = "coco/2017"
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
  c.optimizer.warmup_epochs = 1.0
  c.log_every_steps = 100
  c.best_metric = "coco_AP"
  return c
