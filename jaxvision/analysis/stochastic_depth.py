"""Stochastic depth (Huang et al. 2016): a deep CIFAR ResNet with and without it.

  python -m jaxvision.analysis.stochastic_depth --config stochastic_depth --workdir DIR

The same ResNet trained with whole blocks dropped at random (survival probability decaying
linearly to p_L = 0.5) and without, several seeds each: test error and time per epoch, the two
numbers Huang et al. report. A seeded study (jaxvision.analysis.seeded_study).
"""

from jaxvision.analysis.seeded_study import main

TITLE = "Stochastic depth"

if __name__ == "__main__":
  main(TITLE)
