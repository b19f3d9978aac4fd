"""YOLOv2 on COCO 2017 (train, evaluated on val): 416 x 416 inputs, a ResNet-50 backbone
(13 x 13 grid) and YOLOv2's 5 COCO anchors (yolo.cfg); reports the 12 COCOeval numbers
(`coco_AP`, `coco_AP50`, ...) besides VOC-style mAP@0.5. The paper reports 21.6 AP on
test-dev with Darknet-19.
"""

from jaxvision.configs import yolov2_voc

COCO_ANCHORS = tuple((w / 13, h / 13) for w, h in (
    (0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434), (7.88282, 3.52778),
    (9.77052, 9.16828)))


def get_config():
  c = yolov2_voc.get_config()  # the same network, input size and schedule
  c.model.options.anchors = COCO_ANCHORS
  c.dataset.name = "coco/2017"
  c.optimizer.warmup_epochs = 1.0
  c.best_metric = "coco_AP"
  return c
