"""The training config: every key a run may set, with its default.

Configs in train/configs start from `default_config()` and override what they need. The
config is locked, so an unknown key (in a file or on the command line) is an error.
"""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "cifar_resnet20"
  # Keyword options passed to jaxvision.models.create_model (step_size, share_weights, ...).
  c.model.options = ml_collections.ConfigDict()
  # Initial weights (docs/TRANSFER_LEARNING.md): "" none; a torchvision .safetensors/.pth/.pt
  # file for model.name, or a jaxvision workdir / checkpoint folder (its latest step).
  c.model.pretrained = ""

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "digits"          # digits | mnist | cifar10 | cifar100 | imagenet2012
  c.dataset.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.dataset.image_size = 0           # 0: the dataset's native size; else resize/crop to this
  c.dataset.crop_padding = -1        # -1: the dataset's default; 0 disables random crop
  c.dataset.flip = ml_collections.FieldReference(None, field_type=bool)  # None: dataset default
  c.dataset.shuffle_buffer = 10_000
  c.dataset.max_boxes = 0            # detection: boxes per image after padding (0: dataset default)
  c.dataset.drop_extra_boxes = False  # detection: drop boxes past max_boxes (with a warning) or fail

  c.batch_size = 128                 # global batch, split across devices and hosts
  c.eval_batch_size = 256
  c.num_epochs = 30.0
  c.num_train_steps = -1             # > 0 overrides num_epochs

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"           # sgd | adamw
  c.optimizer.learning_rate = 0.1    # peak learning rate, scaled by batch_size / 256 if lr_scaling
  c.optimizer.lr_scaling = False
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 5e-4    # L2 (sgd: added to the gradient; adamw: decoupled)
  c.optimizer.l1 = 0.0               # L1 penalty coefficient added to the loss
  c.optimizer.schedule = "cosine"    # cosine | step | constant
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.step_epochs = (0.5, 0.75)  # 'step': decay by step_factor at these fractions of training
  c.optimizer.step_factor = 0.1
  c.optimizer.grad_clip_norm = 0.0   # 0: off

  c.finetune = ml_collections.ConfigDict()  # jaxvision/training/finetune.py
  c.finetune.head = ""               # regex of the new head's parameter paths; "": the model's (fc, ...)
  c.finetune.backbone_lr_scale = 1.0  # learning rate of the non-head parameters x this; 0 freezes them
  c.finetune.freeze = ""             # regex of further parameter paths kept frozen (e.g. "conv1|layer1")
  c.finetune.freeze_batch_norm = False  # normalise with the running statistics, never update them

  c.task = "classification"          # jaxvision.training.tasks: loss, eval metrics, batch checks
  c.label_smoothing = 0.0
  c.parallel = "jit"                 # jit (NamedSharding over a 'data' mesh) | pmap

  c.distributed = ml_collections.ConfigDict()  # multi-host: jaxvision/training/distributed.py
  c.distributed.initialize = "auto"  # auto (join if given an address or a SLURM/MPI job) | on | off
  c.distributed.coordinator_address = ""  # "host:port" of process 0; "": $JAX_COORDINATOR_ADDRESS
  c.distributed.num_processes = 0    # 0: detected (Cloud TPU, SLURM, Open MPI)
  c.distributed.process_id = -1      # -1: detected
  c.distributed.local_device_ids = ()  # devices this process drives (one GPU per process); (): all

  c.log_every_steps = 20
  c.log_intermediates = ()           # values sown into "intermediates" to log (e.g. ("nfe",))
  c.eval_every_steps = -1            # -1: once per epoch
  c.checkpoint_every_steps = -1      # -1: once per epoch
  c.keep_checkpoints = 3
  c.best_metric = "accuracy"         # eval metric that picks the kept best checkpoint
  c.plot = True
  c.lock()
  c.model.options.unlock()  # free-form; create_model checks the names
  return c


def check_config(config) -> None:
  """Raises if `config` has a key that `default_config()` does not know."""
  unknown = sorted(_flat_keys(config) - _flat_keys(default_config()))
  if unknown:
    raise ValueError(f"config: unknown key(s) {unknown}; see jaxvision/training/config.py for "
                     "the keys a config may set")


def _flat_keys(c, prefix="") -> set[str]:
  keys = set()
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict) and k != "options":
      keys |= _flat_keys(v, f"{prefix}{k}.")
    else:
      keys.add(prefix + k)
  return keys
