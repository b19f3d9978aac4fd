"""U-Net (residual levels) on Oxford-IIIT Pet trimaps: pet vs background, borders ignored.

  jaxvision-train --config unet_pets --workdir runs/unet_pets
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "segmentation"
  c.model.name = "unet"
  c.model.options.widths = (32, 64, 128, 256, 512)
  c.dataset.name = "oxford_iiit_pet"
  c.dataset.image_size = 128
  c.dataset.shuffle_buffer = 2000
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_epochs = 40.0
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 1.0
  c.best_metric = "miou"
  return c
