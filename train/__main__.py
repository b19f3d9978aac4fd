"""`python -m train` in a clone: the same program as the console script `jaxvision-train`
(jaxvision/cli/train.py); `train/configs` links to the packaged configs in jaxvision/configs."""

from jaxvision.cli.train import run

if __name__ == "__main__":
  run()
