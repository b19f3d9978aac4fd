"""Faster R-CNN on COCO 2017 (train, evaluated on val): 512 x 512 inputs, a ResNet-50 backbone
(conv4 map, stride 16), 4 anchor sizes x 3 aspect ratios, RoIAlign 7 x 7 + two 1024-wide fully
connected layers, torchvision's 26-epoch schedule (SGD 0.02 for 16 images, steps at 16 and
22); reports the 12 COCOeval numbers (`coco_AP`, ...) besides VOC-style mAP@0.5. The paper
reports 42.7 AP@0.5 / 21.9 AP on test-dev with VGG-16.
"""

from jaxvision.configs import faster_rcnn_voc


def get_config():
  c = faster_rcnn_voc.get_config()  # the same network, input size and optimizer
  c.model.options.anchor_sizes = (32, 64, 128, 256)
  c.dataset.name = "coco/2017"
  c.num_epochs = 26.0
  c.optimizer.step_epochs = (16 / 26, 22 / 26)
  c.optimizer.warmup_epochs = 0.1
  c.best_metric = "coco_AP"
  return c
