"""U-Net with residual levels on `shapes/64`, offline, in under 10 minutes on 2 CPU cores.

  python -m train --config train/configs/unet_shapes.py --workdir runs/unet_shapes
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "segmentation"
  c.model.name = "unet"
  c.model.options.widths = (16, 32, 64, 128)
  c.dataset.name = "shapes/64"
  c.batch_size = 16
  c.eval_batch_size = 100
  c.num_epochs = 2.0
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 6e-3
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 0.25
  c.best_metric = "miou"
  return c
