"""Command line: `python -m train --config train/configs/NAME.py --workdir DIR [--config.key=value]`.

Trains (resuming from DIR's latest checkpoint), writing DIR/metrics.jsonl, TensorBoard events,
checkpoints, DIR/summary.json and DIR/curves.png, and prints a one-line summary.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (train/configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from jaxvision.training.fit import NonFiniteLoss, TrainingInterrupted, fit
  try:
    s = fit(_CONFIG.value, _WORKDIR.value)
  except TrainingInterrupted as e:
    print(f"interrupted: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  except NonFiniteLoss as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"done: {s['model']} on {s['dataset']}, {s['steps']} steps ({s['epochs']:.1f} epochs), "
        f"{s['num_params']:,} params, eval accuracy {s['eval_accuracy']:.4f}, eval loss "
        f"{s['eval_loss']:.4f}, best {s['best_accuracy']:.4f} at step {s['best_step']}, "
        f"{s['seconds']:.0f}s; outputs in {s['workdir']}")


if __name__ == "__main__":
  app.run(main)
