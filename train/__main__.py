"""Command line: `python -m train --config train/configs/NAME.py --workdir DIR [--config.key=value]`.

Trains (resuming from DIR's latest checkpoint), writing DIR/metrics.jsonl, TensorBoard events,
checkpoints, DIR/summary.json and DIR/curves.png, and prints a one-line summary.
Multi-host: start the same command on every host (or process); `--config.distributed.*`
(coordinator_address, num_processes, process_id) join them where JAX does not detect the
cluster itself (docs/SCALING.md).
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (train/configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  from jaxvision.training import distributed
  from jaxvision.training.compilation_cache import enable_compilation_cache
  enable_compilation_cache()  # a second run of the same config skips compilation
  from jaxvision.training.fit import NonFiniteLoss, TrainingInterrupted, fit
  try:
    s = fit(_CONFIG.value, _WORKDIR.value)
  except TrainingInterrupted as e:
    print(f"interrupted: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  except NonFiniteLoss as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if not distributed.is_primary():  # one summary line per run
    return
  evals = ", ".join(f"eval {k} {v:.4f}" for k, v in s["eval"].items())
  best = "" if s["best_value"] is None else f", best {s['best_metric']} {s['best_value']:.4f} at step {s['best_step']}"
  print(f"done: {s['model']} on {s['dataset']}, {s['steps']} steps ({s['epochs']:.1f} epochs), "
        f"{s['num_params']:,} params, {evals}{best}, {s['seconds']:.0f}s; outputs in {s['workdir']}")


if __name__ == "__main__":
  app.run(main)
