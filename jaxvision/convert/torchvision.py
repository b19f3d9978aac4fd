"""Weights from and to torchvision: ResNet-18..152, AlexNet, VGG-11..19 (+BN) and GoogLeNet.

`from_torchvision(name, source)` reads a torchvision state_dict (a `.safetensors` file without
torch, a `.pth`/`.pt` file with torch, or a mapping of arrays) into the variables
`{"params", "batch_stats"}` of `create_model(name, ...)`: convolution kernels OIHW -> HWIO,
linear weights (out, in) -> (in, out), BatchNorm weight/bias -> scale/bias and its running
statistics into `batch_stats`, and the blocks of a scanned ResNet stage stacked on a leading
axis. Any missing, unexpected or mis-shaped key is an error that lists them all.
`to_torchvision(name, variables)` is the inverse (state_dict keys and layouts of torchvision).
"""

from __future__ import annotations

import pathlib
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxvision.models import create_model, list_models

# Flax leaf name -> torch parameter/buffer name.
_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
           "var": "running_var"}
_FAMILIES = ((r"resnet(18|34|50|101|152)", "resnet"), (r"alexnet|vgg\d+(_bn)?", "sequential"),
             (r"googlenet", "sequential"))
# torch key of the head's weight, whose rows give num_classes.
_HEAD = {"resnet": "fc.weight", "googlenet": "fc.weight", "alexnet": "classifier.6.weight",
         "vgg": "classifier.6.weight"}
# Keys of torchvision checkpoints a model may lack by choice (torchvision's own googlenet
# builder loads its aux heads and deletes them unless aux_logits=True).
_OPTIONAL = {"googlenet": ("aux1.", "aux2.")}


class ConversionError(ValueError):
  """The state_dict does not fit the model: lists every missing, unexpected or mis-shaped key."""


def convertible_models() -> list[str]:
  """Registry names that have a torchvision counterpart."""
  return [n for n in list_models() if _family(n, strict=False)]


def read_state_dict(source: str | pathlib.Path | Mapping[str, Any]) -> dict[str, np.ndarray]:
  """A state_dict as numpy arrays from a `.safetensors` / `.pth` / `.pt` file or a mapping."""
  if isinstance(source, Mapping):
    return {str(k): _to_numpy(v, k) for k, v in source.items()}
  if not isinstance(source, (str, pathlib.Path)):
    raise TypeError(f"path_or_state_dict: expected a file path or a mapping of arrays, got "
                    f"{type(source).__name__}")
  path = pathlib.Path(source)
  if not path.is_file():
    raise FileNotFoundError(f"path_or_state_dict: no file {path}")
  if path.suffix == ".safetensors":
    from safetensors.numpy import load_file
    return load_file(str(path))
  if path.suffix in (".pth", ".pt"):
    try:
      import torch
    except ImportError as e:
      raise ImportError(f"path_or_state_dict: reading {path.name} needs torch (pip install "
                        "'jaxvision[torch]'); .safetensors files need no torch") from e
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
      raise TypeError(f"path_or_state_dict: {path} holds a {type(state).__name__}, expected a "
                      "state_dict (a mapping of parameter names to tensors)")
    return read_state_dict(state)
  raise ValueError(f"path_or_state_dict: expected a .safetensors, .pth or .pt file, got {path}")


def from_torchvision(name: str, path_or_state_dict, **options) -> dict:
  """Variables {"params", "batch_stats"} of `create_model(name, **options)` from torchvision weights.

  Args:
    name: a registry name with a torchvision counterpart (`convertible_models()`).
    path_or_state_dict: `.safetensors` (read without torch), `.pth`/`.pt` (needs torch) or a
      mapping of names to arrays/tensors, with torchvision's state_dict keys.
    **options: model options; `num_classes` defaults to the rows of the checkpoint's head, and
      options that change the layout (e.g. `scan=False`, `aux_logits=True`) are honoured.
  Returns:
    float32 numpy arrays in the model's variable tree (apply with `train=False` for eval).
  """
  family = _family(name)
  state = read_state_dict(path_or_state_dict)
  head = _HEAD[_head_family(name)]
  if options.get("num_classes") is None:
    options["num_classes"] = int(state[head].shape[0]) if head in state else 1000
  if options.get("share_weights"):
    raise ValueError("options: share_weights=True has no torchvision counterpart (one set of "
                     "weights per block there)")
  model = create_model(name, **options)
  target = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)),
                                             train=False))
  target = {"params": target["params"], "batch_stats": target.get("batch_stats", {})}
  keys = _key_map(family, _unroll(traverse_util.flatten_dict(target)))

  values, missing, misshaped = {}, [], []
  for key, (path, shape) in keys.items():
    if key not in state:
      missing.append(key)
      continue
    expected = _torch_shape(shape)
    if tuple(state[key].shape) != expected:
      misshaped.append(f"{key}: got {tuple(state[key].shape)}, expected {expected}")
      continue
    values[path] = _from_torch(state[key])
  unexpected = [k for k in state if k not in keys and not _ignored(k, name, keys)]
  if missing or unexpected or misshaped:
    parts = [f"{len(v)} {what} key(s): {sorted(v)}" for what, v in
             (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if v]
    raise ConversionError(f"path_or_state_dict: the weights do not fit {name!r} "
                          f"({', '.join(f'{k}={v!r}' for k, v in options.items())}): "
                          + "; ".join(parts))
  return traverse_util.unflatten_dict(_restack(traverse_util.flatten_dict(target), values))


def backbone_from_torchvision(name: str, path_or_state_dict, **options) -> dict:
  """The torchvision classifier `name`'s variables less its classification head, under
  `backbone`: what FCN, YOLO or Faster R-CNN built with `backbone=name` hold there.

  The head is the module of the checkpoint's last Linear layer (`fc`, or `classifier_6` of
  AlexNet and VGG, whose fc6 and fc7 stay: VGG's fully convolutional form uses them). Merge the
  result into a fresh init, e.g. `params = {**fresh["params"], **loaded["params"]}`; `options`
  are the backbone's (`backbone_options`).
  """
  variables = from_torchvision(name, path_or_state_dict, **options)
  head = _HEAD[_head_family(name)].rsplit(".", 1)[0].replace(".", "_")
  return {col: {"backbone": {k: v for k, v in tree.items() if k != head}}
          for col, tree in variables.items()}


def to_torchvision(name: str, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """torchvision's state_dict (numpy, torch layouts) from variables of `create_model(name, ...)`.

  BatchNorm `num_batches_tracked` buffers are written as 0. Save with
  `safetensors.numpy.save_file(...)`; load in PyTorch with `safetensors.torch.load_file` and
  `model.load_state_dict`.
  """
  family = _family(name)
  if "params" not in variables:
    raise ValueError(f"variables: expected a dict with 'params' (and 'batch_stats'), got keys "
                     f"{sorted(variables)}")
  tree = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  flat = _unroll(traverse_util.flatten_dict(jax.tree.map(np.asarray, tree)))
  out = {}
  for key, (path, _) in _key_map(family, flat).items():
    out[key] = _to_torch(flat[path])
    if key.endswith(".running_mean"):
      out[key.replace(".running_mean", ".num_batches_tracked")] = np.zeros((), np.int64)
  return out


def _family(name: str, strict: bool = True) -> str | None:
  for pattern, family in _FAMILIES:
    if re.fullmatch(pattern, name) and name in list_models():
      return family
  if strict:
    raise ValueError(f"name: {name!r} has no torchvision counterpart; expected one of "
                     f"{convertible_models()}")
  return None


def _ignored(key: str, name: str, keys: Mapping[str, Any]) -> bool:
  """A key the model does not take by design: BatchNorm's num_batches_tracked, or the heads a
  model was built without (`_OPTIONAL`)."""
  module = key.rsplit(".", 1)[0]
  if key.endswith(".num_batches_tracked") and f"{module}.running_mean" in keys:
    return True
  return any(key.startswith(p) and not any(k.startswith(p) for k in keys)
             for p in _OPTIONAL.get(name, ()))


def _head_family(name: str) -> str:
  return next(k for k in _HEAD if name.startswith(k))


def _to_numpy(value, key) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    return value.numpy()
  if not hasattr(value, "shape"):
    raise TypeError(f"path_or_state_dict: {key!r} is a {type(value).__name__}, expected an array")
  return np.asarray(value)


def _unroll(flat: dict) -> dict:
  """Paths of scanned stages (`blocks`, stacked) -> one path per block (`blocks_j`)."""
  out = {}
  for path, leaf in flat.items():
    if "blocks" not in path:
      out[path] = leaf
      continue
    i = path.index("blocks")
    for j in range(leaf.shape[0]):
      block = (jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
               if isinstance(leaf, jax.ShapeDtypeStruct) else leaf[j])
      out[path[:i] + (f"blocks_{j}",) + path[i + 1:]] = block
  return out


def _restack(target: dict, values: dict) -> dict:
  """Unrolled values back into the target's layout (stacking `blocks_j` into `blocks`)."""
  out = {}
  for path, leaf in target.items():
    if "blocks" in path:
      i = path.index("blocks")
      out[path] = np.stack([values[path[:i] + (f"blocks_{j}",) + path[i + 1:]]
                            for j in range(leaf.shape[0])])
    else:
      out[path] = values[path]
  return out


def _key_map(family: str, flat: dict) -> dict[str, tuple[tuple, tuple]]:
  """torch key -> (unrolled flax path incl. collection, flax shape)."""
  transitions = {p[1] for p in flat if p[1].endswith("_transition")}
  out = {}
  for path, leaf in flat.items():
    collection, *modules, leaf_name = path
    if leaf_name not in _LEAVES or (leaf_name in ("mean", "var")) != (collection == "batch_stats"):
      raise ValueError(f"variables: unexpected leaf {'/'.join(path)} for a torchvision layout")
    prefix = (_resnet_module(modules, transitions) if family == "resnet"
              else [re.sub(r"_(\d+)$", r".\1", m) for m in modules])
    out[".".join([*prefix, _LEAVES[leaf_name]])] = (path, tuple(leaf.shape))
  return out


def _resnet_module(modules: list[str], transitions: set[str]) -> list[str]:
  """ResNet module path -> torchvision's (`layer2_transition/proj_conv` -> `layer2.0.downsample.0`)."""
  head, rest = modules[0], list(modules[1:])
  shortcut = {"proj_conv": ["downsample", "0"], "proj_bn": ["downsample", "1"]}
  if head.endswith("_transition"):
    return [head[:-len("_transition")], "0"] + (rest[1:] if rest[0] == "branch" else shortcut[rest[0]])
  if re.fullmatch(r"layer\d+", head):
    if not (rest[0].startswith("blocks_") and rest[1:3] == ["block", "branch"]):
      raise ValueError(f"variables: unexpected ResNet module {'/'.join(modules)}")
    j = int(rest[0][len("blocks_"):]) + (f"{head}_transition" in transitions)
    return [head, str(j)] + rest[3:]
  return [head] + rest


def _torch_shape(shape: tuple) -> tuple:
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(reversed(shape)) if len(shape) == 2 else tuple(shape)


def _from_torch(a: np.ndarray) -> np.ndarray:
  a = np.asarray(a, np.float32)
  if a.ndim == 4:
    return np.ascontiguousarray(a.transpose(2, 3, 1, 0))  # OIHW -> HWIO
  return np.ascontiguousarray(a.T) if a.ndim == 2 else a


def _to_torch(a: np.ndarray) -> np.ndarray:
  a = np.asarray(a, np.float32)
  if a.ndim == 4:
    return np.ascontiguousarray(a.transpose(3, 2, 0, 1))  # HWIO -> OIHW
  return np.ascontiguousarray(a.T) if a.ndim == 2 else a
