"""Stochastic depth (jaxvision.analysis.stochastic_depth; Huang et al. 2016).

  python -m jaxvision.analysis.stochastic_depth --config stochastic_depth --workdir DIR

CIFAR ResNet-56 with stochastic depth (survival probability decaying linearly to p_L = 0.5)
and without, three seeds each, on `clutter10` offline or `:cifar10`; the data, optimizer and
budget of plain_vs_residual.py.
"""

from jaxvision.configs.plain_vs_residual import study_config

ARMS = {
    "resnet56": dict(name="cifar_resnet56", options=dict()),
    "resnet56_stochastic_depth": dict(name="cifar_resnet56", options=dict(
        stochastic_depth=True, final_survival_prob=0.5)),
}


def get_config(dataset: str = "clutter10"):
  return study_config(dataset, ARMS, (("resnet56_stochastic_depth", "resnet56"),))
