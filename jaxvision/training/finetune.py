"""Transfer learning: pretrained weights with a new head, frozen parts, per-part learning rates,
and frozen BatchNorm.

Parameters are picked by regular expressions over their paths ("layer1/blocks/block/branch/
conv1/kernel"): a pattern selects a module and everything under it ("fc" matches "fc/kernel"
and "fc/bias", not "fc2/kernel"). The config keys (jaxvision/training/config.py):

  model.pretrained              torchvision file (.safetensors/.pth/.pt) or jaxvision workdir;
                                for a model built on `model.options.backbone` (FCN, YOLO,
                                Faster R-CNN), the weights of that backbone classifier
  finetune.head                 the parameters re-initialised for the new num_classes
  finetune.backbone_lr_scale    learning-rate multiplier of all other parameters (0: frozen)
  finetune.freeze               further parameters kept frozen
  finetune.freeze_batch_norm    normalise with the running statistics, never update them
"""

from __future__ import annotations

import pathlib
import re
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

# The classification head of each family: what a new num_classes replaces.
HEADS = ((r"(cifar_)?resnet\d*", "fc"), (r"googlenet", "fc|aux[12]/fc2"),
         (r"alexnet|vgg\d+(_bn)?", "classifier_6"))
TORCH_SUFFIXES = (".safetensors", ".pth", ".pt")


def path_str(path) -> str:
  """A pytree path (tuple of keys or of names) as 'a/b/c'."""
  return "/".join(str(getattr(k, "key", k)) for k in path)


def path_matches(path: str, pattern: str) -> bool:
  """Whether `pattern` selects the parameter at `path` (a module prefix of it, or all of it)."""
  return bool(pattern) and re.match(rf"(?:{pattern})(?:/|$)", path) is not None


def path_mask(tree, pattern: str):
  """A pytree of bools like `tree`: True where `pattern` selects the leaf's path."""
  return jax.tree_util.tree_map_with_path(lambda p, _: path_matches(path_str(p), pattern), tree)


def default_head(model_name: str) -> str:
  """The head pattern of a registered family (fc, classifier_6, ...)."""
  for names, head in HEADS:
    if re.fullmatch(names, model_name):
      return head
  raise ValueError(f"finetune.head: no default head for model {model_name!r}; set it to a regex "
                   "of the head's parameter paths (e.g. 'fc')")


BACKBONE = "backbone"  # the submodule holding a registry backbone (fcn, yolo, faster_rcnn)
# Every top-level module except the backbone: the new layers of a detector or segmenter.
OUTSIDE_BACKBONE = rf"(?!{BACKBONE}(?:/|$))[^/]+"


def has_backbone(config) -> bool:
  return BACKBONE in config.model.options


def head_pattern(config) -> str:
  if config.finetune.head:
    return config.finetune.head
  return OUTSIDE_BACKBONE if has_backbone(config) else default_head(config.model.name)


def partition_optimizer(tx: optax.GradientTransformation, *, head: str, backbone_lr_scale: float = 1.0,
                        freeze: str = "") -> optax.GradientTransformation:
  """`tx` on the head; `tx` scaled by `backbone_lr_scale` elsewhere (0: frozen); zero updates on
  `freeze`. Frozen parameters have no optimizer state and get no weight decay: they stay
  exactly as loaded. With the defaults (scale 1, nothing frozen) returns `tx` itself."""
  if backbone_lr_scale < 0:
    raise ValueError(f"finetune.backbone_lr_scale: expected a value >= 0, got {backbone_lr_scale}")
  if backbone_lr_scale == 1.0 and not freeze:
    return tx

  def labels(params):
    def label(path, _):
      p = path_str(path)
      if path_matches(p, freeze):
        return "frozen"
      if path_matches(p, head):
        return "head"
      return "backbone" if backbone_lr_scale > 0 else "frozen"
    return jax.tree_util.tree_map_with_path(label, params)

  return optax.multi_transform({"head": tx, "frozen": optax.set_to_zero(),
                                "backbone": optax.chain(tx, optax.scale(backbone_lr_scale))}, labels)


def make_optimizer(tx: optax.GradientTransformation, config) -> optax.GradientTransformation:
  """`partition_optimizer` from a config's `finetune` part."""
  f = config.finetune
  if f.backbone_lr_scale == 1.0 and not f.freeze:
    return tx
  return partition_optimizer(tx, head=head_pattern(config), backbone_lr_scale=f.backbone_lr_scale,
                             freeze=f.freeze)


def load_pretrained(source: str | pathlib.Path, model_name: str, **options) -> dict:
  """Variables {"params", "batch_stats"} from a torchvision file (converted for `model_name`
  with `options`) or from a jaxvision checkpoint (a workdir, its checkpoints/ or best/ folder,
  or one step folder of them: the latest step)."""
  path = pathlib.Path(source)
  if path.suffix in TORCH_SUFFIXES:
    from jaxvision.convert import from_torchvision
    options.pop("num_classes", None)  # the checkpoint's own head
    return from_torchvision(model_name, path, **options)
  if not path.is_dir():
    raise FileNotFoundError(f"model.pretrained: {path} is neither a torchvision file "
                            f"({', '.join(TORCH_SUFFIXES)}) nor a jaxvision checkpoint folder")
  import orbax.checkpoint as ocp
  step_dir = _checkpoint_step(path.resolve())  # orbax wants absolute paths
  tree = ocp.StandardCheckpointer().restore(step_dir / "default")
  return {"params": tree["params"], "batch_stats": tree.get("batch_stats") or {}}


def load_pretrained_for(config) -> dict:
  """The variables `model.pretrained` gives the model of `config`: the whole classifier, or for a
  model on a registry backbone the backbone classifier's without its head, under `backbone`."""
  options = config.model.options.to_dict()
  if not has_backbone(config):
    return load_pretrained(config.model.pretrained, config.model.name, **options)
  name = options[BACKBONE]
  classifier = load_pretrained(config.model.pretrained, name, **(options.get("backbone_options") or {}))
  head = default_head(name)
  return {c: {BACKBONE: {k: v for k, v in classifier.get(c, {}).items() if not path_matches(k, head)}}
          for c in ("params", "batch_stats")}


def _checkpoint_step(path: pathlib.Path) -> pathlib.Path:
  if (path / "default").is_dir():
    return path
  if (path / "checkpoints").is_dir():
    path = path / "checkpoints"
  steps = [p for p in path.iterdir() if p.name.isdigit() and (p / "default").is_dir()]
  if not steps:
    raise FileNotFoundError(f"model.pretrained: no checkpoint in {path} (expected a jaxvision "
                            "workdir, e.g. runs/resnet20_digits from the demo config)")
  return max(steps, key=lambda p: int(p.name))


def with_pretrained(variables: dict, pretrained: dict, head: str) -> dict:
  """`variables` (a fresh init) with every leaf outside `head` taken from `pretrained`.

  The head keeps its fresh initialisation (any num_classes). Leaves outside the head that are
  missing from `pretrained`, mis-shaped, or left over in it are one error listing them all.
  """
  fresh = traverse_util.flatten_dict({c: variables.get(c, {}) for c in ("params", "batch_stats")})
  given = traverse_util.flatten_dict({c: pretrained.get(c, {}) for c in ("params", "batch_stats")})
  in_head = lambda path: path_matches(path_str(path[1:]), head)
  out, missing, misshaped = {}, [], []
  for path, leaf in fresh.items():
    if in_head(path):
      out[path] = leaf
    elif path not in given:
      missing.append(path_str(path))
    elif np.shape(given[path]) != np.shape(leaf):
      misshaped.append(f"{path_str(path)}: pretrained {np.shape(given[path])}, model {np.shape(leaf)}")
    else:
      out[path] = jnp.asarray(given[path], jnp.result_type(leaf))
  unexpected = [path_str(p) for p in given if p not in fresh and not in_head(p)]
  if missing or misshaped or unexpected:
    parts = [f"{len(v)} {what}: {sorted(v)}" for what, v in (
        ("missing", missing), ("mis-shaped", misshaped), ("unexpected", unexpected)) if v]
    raise ValueError(f"model.pretrained: the pretrained variables do not fit the model outside "
                     f"the head {head!r}: " + "; ".join(parts))
  return traverse_util.unflatten_dict(out)


def frozen_batch_norm(apply_fn: Callable) -> Callable:
  """`apply_fn` with every nn.BatchNorm normalising by its running statistics (never updated),
  also when called with train=True: torchvision's FrozenBatchNorm2d (dropout and stochastic
  depth still follow `train`)."""

  def apply(*args, **kwargs):
    with nn.intercept_methods(_running_average_batch_norm):
      return apply_fn(*args, **kwargs)

  return apply


def _running_average_batch_norm(next_fun, args, kwargs, context):
  m = context.module
  if not isinstance(m, nn.BatchNorm) or context.method_name != "__call__" or m.is_initializing():
    return next_fun(*args, **kwargs)
  if m.axis != -1:
    raise ValueError(f"finetune.freeze_batch_norm: supports BatchNorm over the last axis, "
                     f"got axis={m.axis}")
  x = args[0]
  mul = jax.lax.rsqrt(m.get_variable("batch_stats", "var") + m.epsilon)
  if m.use_scale:
    mul = mul * m.get_variable("params", "scale")
  y = (x - m.get_variable("batch_stats", "mean")) * mul
  if m.use_bias:
    y = y + m.get_variable("params", "bias")
  return y.astype(m.dtype or jnp.result_type(x))


def prepare_state(state, config, *, load_pretrained_weights: bool = True):
  """A fresh train state set up for fine-tuning by `config`: pretrained weights outside the head
  (when `model.pretrained` is set and `load_pretrained_weights`), fresh optimizer state, and
  frozen BatchNorm if asked. Unchanged for a config without fine-tuning settings."""
  if config.finetune.freeze_batch_norm:
    state = state.replace(apply_fn=frozen_batch_norm(state.apply_fn))
  if not (config.model.pretrained and load_pretrained_weights):
    return state
  pretrained = load_pretrained_for(config)
  variables = with_pretrained({"params": state.params, "batch_stats": state.batch_stats},
                              pretrained, head_pattern(config))
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  return state.replace(params=params, batch_stats=batch_stats, opt_state=state.tx.init(params))

