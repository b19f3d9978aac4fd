"""He et al. 2015 section 4.2 on CIFAR-10: ResNet-56, batch 128, SGD 0.1 with momentum 0.9,
weight decay 1e-4, divided by 10 at 50% and 75% of 164 epochs (published test error 6.97%;
`--config.model.name=cifar_resnet110` for 6.43%)."""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.model.name = "cifar_resnet56"
  c.dataset.name = "cifar10"
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_epochs = 164.0
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.step_epochs = (0.5, 0.75)
  c.log_every_steps = 100
  return c
