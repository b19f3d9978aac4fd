"""The training config: every key a run may set, with its default.

Configs in jaxvision/configs start from `default_config()` and override what they need. The
config is locked, so an unknown key (in a file or on the command line) is an error.
`validate_config` lists every problem of a config (keys, types, ranges, names) in one line each;
`check_config` raises them together as a `ConfigError` before a run builds anything.
"""

import difflib
import numbers
import re

import ml_collections
import numpy as np

from jaxvision.data.config import default_dataset_config
from jaxvision.models import list_models, model_options
from jaxvision.models.registry import compute_dtype
from jaxvision.training import distributed, optim, parallel, tasks


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

  c.dataset = default_dataset_config()  # jaxvision/data/config.py

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
  # Resuming a workdir whose run had other trajectory-relevant settings (model and options,
  # dataset, batch size, optimizer, schedule, seed) is refused; True continues under the new ones.
  c.resume_with_changes = False
  c.lock()
  c.model.options.unlock()  # free-form; create_model checks the names
  return c


class ConfigError(ValueError):
  """A config with problems; `errors` holds one line per problem (the message, line by line)."""

  def __init__(self, errors):
    self.errors = list(errors)
    super().__init__("\n".join(self.errors))


def check_config(config) -> None:
  """Raises ConfigError listing every problem `validate_config` finds."""
  errors = validate_config(config)
  if errors:
    raise ConfigError(errors)


def validate_config(config) -> list[str]:
  """Every problem of a training config, one line each in the house style; [] when valid.

  Checked before anything is built or compiled: keys against `default_config()` (an unknown key
  names the closest known one), every value's type, ranges, the names of the model and its
  options (`dtype` strings included), optimizer, schedule, task, parallel wrapper and
  distributed mode, and the keys that depend on each other. Left to the run builder: what needs
  the dataset, the devices or the task (batch sizes vs devices, `best_metric`).
  """
  errors, bad = [], set()  # bad: paths with a wrong key or type (no further checks below them)
  _check_tree(config, default_config(), "", errors, bad)

  def value(path):
    parts = path.split(".")
    if any(".".join(parts[:i + 1]) in bad for i in range(len(parts))):
      return _ABSENT
    node = config
    for part in parts:
      if part not in node:
        return _ABSENT
      node = node[part]
    return node

  for path, ok, expected in _RULES:
    v = value(path)
    if v is not _ABSENT and not ok(v):
      errors.append(_got(path, v, expected))
  for path, allowed in _NAMES:
    v = value(path)
    if v is not _ABSENT and v not in allowed():
      errors.append(_got(path, v, _one_of(v, allowed())))
  errors += _check_dependent(value)
  return errors


def key_error(path: str) -> str | None:
  """None if `path` (e.g. 'optimizer.learning_rate') is a key or group of `default_config()` (or
  lies under the free-form `model.options`); else the error line, naming the closest key."""
  node, parts = default_config(), path.split(".")
  for i, part in enumerate(parts):
    if parts[:i] == ["model", "options"]:
      return None
    if not isinstance(node, ml_collections.ConfigDict):
      return (f"config.{path}: unknown key; config.{'.'.join(parts[:i])} is a value, not a group "
              "of keys")
    if part not in node:
      return _unknown(path, i, list(node.keys()))
    node = node[part]
  return None


def expected_type(path: str) -> str:
  """What the value of key `path` of `default_config()` must be, in words ('an integer')."""
  *parents, key = path.split(".")
  node = default_config()
  for part in parents:
    node = node[part]
  if isinstance(node[key], ml_collections.ConfigDict):
    return "a group of keys (a ConfigDict)"
  kind = node.get_type(key)
  return _TYPES.get(kind, kind.__name__) + (" or None" if node[key] is None else "")


_ABSENT = object()
_TYPES = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
          tuple: "a tuple", list: "a list"}


def _got(path: str, value, expected: str) -> str:
  return f"config.{path}: got {value!r}; expected {expected}"


def _unknown(path: str, index: int, siblings: list[str]) -> str:
  """The error line of `path` whose part `index` is none of `siblings`."""
  parts = path.split(".")
  close = difflib.get_close_matches(parts[index], siblings, n=1)
  if close:
    fix = (close[0] if index == len(parts) - 1
           else ".".join(parts[:index] + close + parts[index + 1:]))
    return f"config.{path}: unknown key; did you mean {fix}?"
  where = ".".join(["config"] + parts[:index])
  return f"config.{path}: unknown key; expected one of the keys of {where}: {sorted(siblings)}"


def _one_of(value, allowed) -> str:
  allowed = sorted(allowed)
  close = difflib.get_close_matches(str(value), allowed, n=3)
  hint = f" (closest: {', '.join(map(repr, close))})" if close else ""
  return f"one of {allowed}{hint}" if len(allowed) <= 12 else f"one of {len(allowed)} names{hint}"


def _type_ok(value, kind: type) -> bool:
  if kind is bool:
    return isinstance(value, (bool, np.bool_))
  if isinstance(value, (bool, np.bool_)):
    return False
  if kind is int:
    return isinstance(value, numbers.Integral)
  if kind is float:
    return isinstance(value, numbers.Real)
  if kind in (tuple, list):
    return isinstance(value, (tuple, list))
  return isinstance(value, kind)


def _check_tree(config, default, prefix: str, errors: list, bad: set) -> None:
  """Unknown, missing and mistyped keys of `config` against `default`, recursively."""
  for key in config.keys():
    path = prefix + key
    if key not in default:
      errors.append(_unknown(path, path.count("."), list(default.keys())))
      bad.add(path)
      continue
    value, ref = config[key], default[key]
    if isinstance(ref, ml_collections.ConfigDict):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        errors.append(_got(path, value, "a group of keys (a ConfigDict)"))
        bad.add(path)
      elif path != "model.options":  # free-form: the model's options, checked below
        _check_tree(value, ref, path + ".", errors, bad)
      continue
    if not (value is None and ref is None) and not _type_ok(value, default.get_type(key)):
      errors.append(_got(path, value, expected_type(path)))
      bad.add(path)
  for key in default.keys():
    if key not in config:
      errors.append(f"config.{prefix}{key}: missing; expected every key of default_config() "
                    "(start a config from it)")
      bad.add(prefix + key)


def _fraction(v) -> bool:
  return 0 <= v < 1


def _at_least(lo):
  return lambda v: v >= lo


def _every(v) -> bool:
  return v == -1 or v >= 1


def _regex(v) -> bool:
  try:
    re.compile(v)
  except re.error:
    return False
  return True


def _increasing_fractions(v) -> bool:
  return (all(_type_ok(x, float) and 0 < x < 1 for x in v)
          and all(a < b for a, b in zip(v, v[1:])))


def _names(v) -> bool:
  return all(isinstance(x, str) and x for x in v)


def _device_ids(v) -> bool:
  return all(_type_ok(i, int) and i >= 0 for i in v) and len(set(v)) == len(v)


def _address(v) -> bool:
  host, _, port = v.rpartition(":")
  return not v or (bool(host) and port.isdigit())


_RULES = (  # (path, test of a value of the right type, what is expected)
    ("batch_size", _at_least(1), "an integer >= 1"),
    ("eval_batch_size", _at_least(1), "an integer >= 1"),
    ("num_train_steps", _every, "-1 (train num_epochs) or an integer >= 1"),
    ("optimizer.learning_rate", lambda v: v > 0, "a number > 0"),
    ("optimizer.momentum", _fraction, "a number in [0, 1)"),
    ("optimizer.b1", _fraction, "a number in [0, 1)"),
    ("optimizer.b2", _fraction, "a number in [0, 1)"),
    ("optimizer.weight_decay", _at_least(0), "a number >= 0"),
    ("optimizer.l1", _at_least(0), "a number >= 0"),
    ("optimizer.warmup_epochs", _at_least(0), "a number >= 0"),
    ("optimizer.step_epochs", _increasing_fractions, "increasing fractions of training in (0, 1)"),
    ("optimizer.step_factor", lambda v: v > 0, "a number > 0"),
    ("optimizer.grad_clip_norm", _at_least(0), "a number >= 0 (0: off)"),
    ("finetune.head", _regex, "a regular expression ('': the model's head)"),
    ("finetune.freeze", _regex, "a regular expression ('': none)"),
    ("finetune.backbone_lr_scale", _at_least(0), "a number >= 0 (0 freezes the backbone)"),
    ("label_smoothing", _fraction, "a number in [0, 1)"),
    ("distributed.coordinator_address", _address, "'' (detect) or 'host:port'"),
    ("distributed.num_processes", _at_least(0), "an integer >= 0 (0: detect)"),
    ("distributed.process_id", _at_least(-1), "an integer >= -1 (-1: detect)"),
    ("distributed.local_device_ids", _device_ids, "distinct device ids (integers >= 0)"),
    ("log_every_steps", _at_least(1), "an integer >= 1"),
    ("log_intermediates", _names, "a tuple of names (non-empty strings)"),
    ("eval_every_steps", _every, "-1 (once per epoch) or an integer >= 1"),
    ("checkpoint_every_steps", _every, "-1 (once per epoch) or an integer >= 1"),
    ("keep_checkpoints", _at_least(1), "an integer >= 1"),
    ("best_metric", bool, "the name of an eval metric"),
    ("dataset.name", bool, "a dataset name"),
    ("dataset.image_size", _at_least(0), "an integer >= 0 (0: the dataset's size)"),
    ("dataset.crop_padding", _at_least(-1), "an integer >= -1 (-1: the dataset's default)"),
    ("dataset.shuffle_buffer", _at_least(1), "an integer >= 1"),
    ("dataset.max_boxes", _at_least(0), "an integer >= 0 (0: the dataset's default)"),
)

_NAMES = (  # (path, the names it accepts)
    ("model.name", list_models),
    ("optimizer.name", lambda: optim.OPTIMIZERS),
    ("optimizer.schedule", lambda: optim.SCHEDULES),
    ("task", tasks.task_names),
    ("parallel", lambda: parallel.KINDS),
    ("distributed.initialize", lambda: distributed.MODES),
)

# Options the run sets itself (from the dataset and the parallel wrapper).
RUN_SET_OPTIONS = ("num_classes", "axis_name")


def _check_dependent(value) -> list[str]:
  """Checks of keys against each other and of the model's options."""
  errors = []
  steps, epochs = value("num_train_steps"), value("num_epochs")
  if steps == -1 and epochs is not _ABSENT:
    if not epochs > 0:
      errors.append(_got("num_epochs", epochs, "a number > 0 (or num_train_steps >= 1)"))
    warmup = value("optimizer.warmup_epochs")
    if epochs > 0 and warmup is not _ABSENT and warmup > epochs:
      errors.append(_got("optimizer.warmup_epochs", warmup, f"a number in [0, num_epochs = "
                         f"{epochs}]"))
  n, i = value("distributed.num_processes"), value("distributed.process_id")
  if _ABSENT not in (n, i) and n > 0 and i >= n:
    errors.append(_got("distributed.process_id", i, f"-1 (detect) or below num_processes = {n}"))
  name, options = value("model.name"), value("model.options")
  if name in list_models() and options is not _ABSENT:
    allowed = model_options(name)
    for key in options.keys():
      if key in RUN_SET_OPTIONS:
        errors.append(f"config.model.options.{key}: set by the run (from the dataset and "
                      f"config.parallel); expected it not among the options")
      elif key not in allowed:
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        errors.append(f"config.model.options.{key}: unknown option of model {name!r}; {hint}"
                      f"expected some of {[k for k in allowed if k not in RUN_SET_OPTIONS]}")
    if isinstance(options.get("dtype"), str):
      try:
        compute_dtype(options["dtype"])
      except ValueError:
        errors.append(_got("model.options.dtype", options["dtype"], "a floating-point dtype name "
                           "such as 'bfloat16', 'float16' or 'float32'"))
  return errors
