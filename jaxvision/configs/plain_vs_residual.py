"""He et al.'s degradation experiment (jaxvision.analysis.plain_vs_residual).

  python -m jaxvision.analysis.plain_vs_residual --config plain_vs_residual --workdir DIR
  python -m jaxvision.analysis.plain_vs_residual --config plain_vs_residual:cifar10 --workdir DIR

Plain-20/56 (`shortcut="none"`) against ResNet-20/56 (option A shortcuts), three seeds each,
the same data, optimizer and budget. Offline it runs on `clutter10` (docs/DATASETS.md: a CPU
stand-in, not CIFAR-10) for a CPU budget; `:cifar10` is He et al.'s setting (batch 128, SGD 0.1,
weight decay 1e-4, divided by 10 at 50% and 75% of 164 epochs) where the data can be had.
On clutter10 the budget and optimiser are the calibrated ResNet-20 run's (docs/DATASETS.md: AdamW
3e-3, 3 epochs, 90.1% test accuracy for ResNet-20); He et al.'s SGD barely leaves chance there in
that budget. Three seeds of the four arms take hours on a 2-core CPU.
"""

import ml_collections

from jaxvision.training.config import default_config

ARMS = {
    "plain20": dict(name="cifar_resnet20", options=dict(shortcut="none")),
    "resnet20": dict(name="cifar_resnet20", options=dict()),
    "plain56": dict(name="cifar_resnet56", options=dict(shortcut="none")),
    "resnet56": dict(name="cifar_resnet56", options=dict()),
}
# Paired differences (a - b, same seeds) in results.md: residual against plain at each depth,
# and depth within each family (the degradation problem is plain56 - plain20 > 0).
COMPARISONS = (("plain20", "resnet20"), ("plain56", "resnet56"), ("plain56", "plain20"),
               ("resnet56", "resnet20"))
# Per dataset: batch, epochs, schedule and how often the curves are sampled.
_DATASETS = {
    "clutter10": dict(batch_size=128, num_epochs=3.0, optimizer="adamw", learning_rate=3e-3,
                      schedule="cosine", warmup_epochs=0.5, eval_every_steps=78,
                      log_every_steps=26),
    "cifar10": dict(batch_size=128, num_epochs=164.0, optimizer="sgd", learning_rate=0.1,
                    schedule="step", warmup_epochs=0.0, eval_every_steps=1000,
                    log_every_steps=100),
}


def study_config(dataset: str, arms: dict, comparisons=()) -> ml_collections.ConfigDict:
  """A seeded study's config: `arms` x three seeds over one training config for `dataset`, and
  the pairs of arms whose paired differences its results report."""
  if dataset not in _DATASETS:
    raise ValueError(f"dataset: expected one of {sorted(_DATASETS)} after the config path's "
                     f"colon, got {dataset!r}")
  d = _DATASETS[dataset]
  c = ml_collections.ConfigDict()
  c.arms = ml_collections.ConfigDict(arms)
  c.seeds = (0, 1, 2)
  c.comparisons = tuple(comparisons)
  t = default_config()
  t.model.name = next(iter(arms.values()))["name"]
  t.dataset.name = dataset
  t.batch_size = d["batch_size"]
  t.eval_batch_size = 500
  t.num_epochs = d["num_epochs"]
  t.optimizer.name = d["optimizer"]
  t.optimizer.learning_rate = d["learning_rate"]
  t.optimizer.weight_decay = 1e-4
  t.optimizer.schedule = d["schedule"]
  t.optimizer.warmup_epochs = d["warmup_epochs"]
  t.eval_every_steps = d["eval_every_steps"]
  t.log_every_steps = d["log_every_steps"]
  t.checkpoint_every_steps = d["eval_every_steps"]
  t.keep_checkpoints = 1
  t.plot = False
  c.train = t
  return c


def get_config(dataset: str = "clutter10") -> ml_collections.ConfigDict:
  return study_config(dataset, ARMS, COMPARISONS)
