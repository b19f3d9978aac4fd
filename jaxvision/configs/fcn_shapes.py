"""FCN-8s on a ResNet-10-style backbone on `shapes/64`, offline, in under 10 minutes on 2 CPU cores.

  jaxvision-train --config fcn_shapes --workdir runs/fcn_shapes
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "segmentation"
  c.model.name = "fcn8s"
  c.model.options.backbone = "resnet"
  # One basic block per stage at half ResNet-18's width; stages unrolled (fast on CPU).
  c.model.options.backbone_options = dict(stage_sizes=(1, 1, 1, 1), widths=(32, 64, 128, 256),
                                          stem_width=32, scan=False)
  c.dataset.name = "shapes/64"
  c.batch_size = 16
  c.eval_batch_size = 100
  c.num_epochs = 4.0
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 6e-3
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 0.25
  c.best_metric = "miou"
  return c
