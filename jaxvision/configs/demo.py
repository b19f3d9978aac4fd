"""`make demo`: CIFAR ResNet-20 on scikit-learn's digits, offline, a few minutes on 2 CPU cores."""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.model.name = "cifar_resnet20"
  c.dataset.name = "digits"
  c.batch_size = 64
  c.num_epochs = 15.0
  c.optimizer.learning_rate = 0.1
  c.optimizer.warmup_epochs = 1.0
  return c
