"""Huang et al. 2016 on CIFAR-100: ResNet-110 with stochastic depth (linear decay to p_L = 0.5),
500 epochs, Nesterov SGD 0.1, weight decay 1e-4, divided by 10 at 50% and 75% of training
(published test error 27.22% without, 24.98% with stochastic depth)."""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.model.name = "cifar_resnet110"
  c.model.options.stochastic_depth = True
  c.model.options.final_survival_prob = 0.5
  c.dataset.name = "cifar100"
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_epochs = 500.0
  c.optimizer.learning_rate = 0.1
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.step_epochs = (0.5, 0.75)
  c.log_every_steps = 100
  return c
