"""He et al.'s degradation experiment: plain networks against ResNets of the same depth.

  python -m jaxvision.analysis.plain_vs_residual --config plain_vs_residual --workdir DIR
  python -m jaxvision.analysis.plain_vs_residual --config plain_vs_residual:cifar10 --workdir DIR

Plain-20/56 (`shortcut="none"`: the same layers and parameters, no skip) against
ResNet-20/56, each with several seeds (He et al. 2015, Fig. 1 and 6): a deeper plain network
trains worse, the residual one does not. A seeded study (jaxvision.analysis.seeded_study):
results.md with mean +- std and 95% intervals, curves.png with bands.
"""

from jaxvision.analysis.seeded_study import main

TITLE = "Plain vs residual networks"

if __name__ == "__main__":
  main(TITLE)
