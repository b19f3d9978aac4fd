"""CIFAR ResNet-20 on `clutter10` (procedural 32x32x3, 10 classes, offline): a few CPU-minutes.

A stand-in for CIFAR-10-sized experiments on a CPU, not a claim about CIFAR-10
(docs/DATASETS.md has the measured accuracies and the commands). Padding-4 random crops and
left-right flips as on CIFAR-10 (every clutter10 class is mirror-symmetric). The plain network of
the degradation experiment: `--config.model.name=cifar_resnet56 --config.model.options.shortcut=none`.
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.model.name = "cifar_resnet20"
  c.dataset.name = "clutter10"
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_epochs = 3.0
  c.optimizer.learning_rate = 0.1
  c.optimizer.warmup_epochs = 0.5
  c.optimizer.weight_decay = 5e-4
  c.log_every_steps = 50
  return c
