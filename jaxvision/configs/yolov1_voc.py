"""YOLOv1 (Redmon et al. 2016) on PASCAL VOC 2007+2012 trainval, tested on VOC2007 test: a
7 x 7 grid of B = 2 boxes and 20 classes (7 x 7 x 30) on 224 x 224 inputs with a ResNet-50
backbone (stride 32), the paper's loss weights (lambda_coord 5, lambda_noobj 0.5), SGD with
momentum 0.9 and weight decay 5e-4 for 135 epochs. The paper reaches 63.4 mAP (VOC2007 test)
with its own ImageNet-pretrained 448 x 448 network; start from ImageNet weights with
`--config.model.pretrained=...` (jaxvision.training.finetune).
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "detection"
  c.model.name = "yolov1"
  c.model.options.backbone = "resnet50"
  c.model.options.num_boxes = 2
  c.model.options.grid_size = 7
  c.model.options.head_width = 1024
  c.model.options.head_depth = 2
  c.dataset.name = "voc/2007+2012"
  c.dataset.image_size = 224
  c.batch_size = 64
  c.eval_batch_size = 64
  c.num_epochs = 135.0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1e-2
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_epochs = 2.0
  c.optimizer.grad_clip_norm = 10.0
  c.log_every_steps = 100
  c.best_metric = "map_voc07"
  return c
