"""The default config: CIFAR ResNet-20 on digits (all keys: jaxvision/training/config.py)."""

from jaxvision.training.config import default_config


def get_config():
  return default_config()
