"""CIFAR ResNet-20 on MNIST (needs the TFDS `mnist` data; downloads where the network allows)."""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.model.name = "cifar_resnet20"
  c.dataset.name = "mnist"
  c.batch_size = 128
  c.num_epochs = 10.0
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 1.0
  return c
