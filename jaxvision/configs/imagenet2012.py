"""ResNet-50 on ImageNet (TFDS `imagenet2012`, manual download): batch 1024, SGD with
momentum, learning rate 0.1 x batch/256 with 5 warmup epochs and cosine decay over 90 epochs,
weight decay 1e-4, label smoothing 0.1. `--config.model.options.dtype=bfloat16` for mixed precision."""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.model.name = "resnet50"
  c.dataset.name = "imagenet2012"
  c.dataset.shuffle_buffer = 16_384
  c.batch_size = 1024
  c.eval_batch_size = 1000
  c.num_epochs = 90.0
  c.optimizer.learning_rate = 0.1
  c.optimizer.lr_scaling = True
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 5.0
  c.label_smoothing = 0.1
  c.log_every_steps = 100
  return c
