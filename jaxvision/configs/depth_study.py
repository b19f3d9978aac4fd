"""The ODE-vs-ResNet depth study (`make demo`; docs/DEPTH_STUDY.md).

  python -m jaxvision.analysis.depth_study --config depth_study --workdir runs/demo
  python -m jaxvision.analysis.depth_study --config depth_study:digits_full --workdir DIR
  python -m jaxvision.analysis.depth_study --config depth_study:mnist --workdir DIR

Every run trains the `odenet` model with the same stem, head, data, optimizer and budget
(`train`, a training config of jaxvision/training/config.py); only its middle changes: a
residual stage of N blocks at h = T/N for each N in `depths`, with and without weight sharing,
or an ODE block over [0, T] for each entry of `odes`; every run once per seed of `seeds`
(`train.seed` is replaced by each). The switch after the colon (digits, digits_full, mnist,
cifar10) picks the data and a budget that suits it: `digits` (the default, `make demo`) is a
preset of the full sweep cut for 10 minutes on a 2-core CPU (three depths, the RK4 ODE run,
two seeds, no BatchNorm ResNet or `ode_resnet` arms; docs/DEPTH_STUDY.md has its measured time); `digits_full` and the others are the full
sweep (seven depths, three ODE solvers, the lecture's BatchNorm ResNet stage at seven depths
and its `ode_resnet` limit, three seeds).
"""

import ml_collections

from jaxvision.training.config import default_config

# Per dataset: stem (width, downsampling), batch, epochs, optimizer, random-crop padding.
_DATASETS = {
    # 1437 8x8 training images: 5 epochs of Adam on a 3x3x32 state, no random crop, so that
    # the whole sweep finishes in under 15 minutes on a 2-core CPU.
    "digits": dict(width=32, downsampling=1, batch_size=32, num_epochs=5.0, optimizer="adamw",
                   learning_rate=3e-3, crop_padding=0),
    # Chen et al.'s MNIST setting: 64 channels at 6x6, SGD with momentum, lr 0.1, batch 128.
    "mnist": dict(width=64, downsampling=2, batch_size=128, num_epochs=10.0, optimizer="sgd",
                  learning_rate=0.1, crop_padding=-1),
    "cifar10": dict(width=64, downsampling=1, batch_size=128, num_epochs=30.0, optimizer="sgd",
                    learning_rate=0.1, crop_padding=-1),
}


# The `make demo` preset (`depth_study` or `depth_study:digits`): the full digits sweep cut for
# 10 minutes of a 2-core CPU (4.2 minutes, 251 CPU-seconds, measured; docs/DEPTH_STUDY.md).
DEMO = dict(depths=(2, 4, 16), odes=("rk4_dt025",), seeds=(0, 1))
PRESETS = ("digits", "digits_full", "mnist", "cifar10")


def get_config(preset: str = "digits") -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    raise ValueError(f"dataset: expected one of {list(PRESETS)} after the config path's "
                     f"colon, got {preset!r}")
  dataset = preset.removesuffix("_full")
  d = _DATASETS[dataset]
  c = ml_collections.ConfigDict()
  c.depths = (1, 2, 4, 8, 16, 32, 64)  # N: blocks of the residual stage, h = t1 / N
  c.share_weights = (True, False)
  c.seeds = (0, 1, 2)  # each run once per seed (its train.seed)
  # ODE-block runs: name -> jaxvision.nn.ode.ODEOptions keys.
  c.odes = ml_collections.ConfigDict({
      "dopri5": dict(solver="dopri5", controller="pid", rtol=1e-3, atol=1e-3),
      "dopri5_backsolve": dict(solver="dopri5", controller="pid", rtol=1e-3, atol=1e-3,
                               adjoint="backsolve"),
      "rk4_dt025": dict(solver="rk4", controller="constant", dt=0.25),
  })
  # The lecture's arms (full presets only: each costs a multiple of an odenet run on a CPU):
  # a BatchNorm ResNet stage `Y_{j+1} = relu(Y_j + (T/N) G(Y_j, theta_j))` (model `resnet`: a
  # 3x3 stem, one stage of N basic blocks of `bn_width` channels at the input's resolution,
  # pool, Dense) for each N of `bn_depths`, with and without shared weights (`share_weights`);
  # and its ODE limit (model `ode_resnet` with the same single stage as an ODE block over
  # [0, T], GroupNorm in f) for each entry of `ode_resnets` (ODEOptions keys).
  c.bn_depths = c.depths
  c.bn_width = 16
  c.ode_resnets = ml_collections.ConfigDict({
      "rk4_dt025": dict(solver="rk4", controller="constant", dt=0.25)})
  # The accurate solve that a shared-weight stage's output is compared with.
  c.reference = ml_collections.ConfigDict(dict(solver="dopri5", controller="pid", rtol=1e-6,
                                               atol=1e-6))
  c.distance_examples = 256            # test images for the distance-to-ODE and the NFE
  c.timed_steps = 5                    # train steps timed (median) for the time per epoch

  t = default_config()
  t.model.name = "odenet"
  # t1 = T: the residual stage (h = T / N) and the ODE block integrate over [0, T].
  # scan_unroll=1: the residual stage stays a rolled loop, so compile time is flat in N.
  t.model.options = ml_collections.ConfigDict(dict(
      width=d["width"], downsampling=d["downsampling"], t1=1.0, time_dependent=True,
      scan_unroll=1))
  t.dataset.name = dataset
  t.dataset.crop_padding = d["crop_padding"]
  t.batch_size = d["batch_size"]
  t.num_epochs = d["num_epochs"]
  t.optimizer.name = d["optimizer"]
  t.optimizer.learning_rate = d["learning_rate"]
  t.optimizer.warmup_epochs = 1.0
  t.optimizer.weight_decay = 1e-4 if d["optimizer"] == "adamw" else 5e-4
  t.log_intermediates = ("nfe",)
  t.keep_checkpoints = 1
  t.checkpoint_every_steps = 10**9     # only at the end of each run (evaluation every epoch)
  t.plot = False
  c.train = t
  if preset == "digits":
    c.depths, c.seeds, c.bn_depths = DEMO["depths"], DEMO["seeds"], ()
    c.odes = ml_collections.ConfigDict({k: c.odes[k].to_dict() for k in DEMO["odes"]})
    c.ode_resnets = ml_collections.ConfigDict()
  return c
