"""FCN-8s on a ResNet-50 backbone on PASCAL VOC 2012 segmentation (train -> val).

Needs VOCtrainval_11-May-2012.tar in TFDS's manual directory (see
jaxvision/data/builders/voc_segmentation.py); the first run prepares the dataset. Training from
scratch; `model.pretrained` may name ImageNet weights for the backbone.

  jaxvision-train --config fcn_voc --workdir runs/fcn_voc
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "segmentation"
  c.model.name = "fcn8s"
  c.model.options.backbone = "resnet50"
  c.dataset.name = "voc2012_segmentation"
  c.dataset.image_size = 320
  c.dataset.shuffle_buffer = 2000
  c.batch_size = 16
  c.eval_batch_size = 16
  c.num_epochs = 100.0
  c.optimizer.learning_rate = 0.01
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 1.0
  c.best_metric = "miou"
  return c
