"""Mixed precision for every model family: bfloat16 compute, float32 parameters, BatchNorm
statistics, outputs and loss; `dtype` may be a string (config files, the command line)."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.models import create_model
from jaxvision.training import steps
from jaxvision.training.detection_task import Detection
from jaxvision.training.segmentation_task import Segmentation
from jaxvision.training.tasks import Classification
from jaxvision.training.train_state import TrainState, create_train_state

TINY_RESNET = dict(stage_sizes=(1, 1), widths=(4, 8), stem="cifar", stem_width=4)
# Feature maps at strides 4, 8, 16 and 32 (FCN-8s's skips).
STRIDE32_RESNET = dict(stage_sizes=(1, 1, 1, 1), widths=(4, 4, 4, 4), stem="imagenet", stem_width=4)
ODE = dict(width=8, downsampling=1, groups=4, solver="midpoint", controller="constant", dt=0.5)

# family: (model name, options, image size, task).
CASES = {
    "resnet": ("resnet", TINY_RESNET, 8, "classification"),
    "cifar_resnet": ("cifar_resnet20", {}, 8, "classification"),
    "alexnet": ("alexnet", {}, 63, "classification"),
    "vgg": ("vgg11_bn", {}, 32, "classification"),
    "googlenet": ("googlenet", {}, 32, "classification"),
    "odenet": ("odenet", dict(ODE, conv_impl="xla"), 8, "classification"),
    "odenet_patches": ("odenet", ODE, 8, "classification"),
    "ode_resnet": ("ode_resnet", dict(base="cifar_resnet20", groups=4, solver="euler",
                                     controller="constant", dt=1.0), 8, "classification"),
    "fcn": ("fcn8s", dict(backbone="resnet", backbone_options=STRIDE32_RESNET), 32,
            "segmentation"),
    "unet": ("unet", dict(widths=(4, 8)), 8, "segmentation"),
    "segnet": ("segnet", dict(widths=(4,), convs_per_level=1), 8, "segmentation"),
    "full_resolution_fcn": ("full_resolution_fcn", dict(width=4, depth=2), 8, "segmentation"),
    "yolo": ("yolov2", dict(backbone="resnet", backbone_options=TINY_RESNET, head_width=8,
                            head_depth=1, anchors=((0.3, 0.3), (0.6, 0.6))), 8, "detection"),
    "yolov1": ("yolov1", dict(backbone="resnet", backbone_options=TINY_RESNET, head_width=8,
                              head_depth=1), 8, "detection"),
    "window_cnn": ("window_cnn", dict(widths=(4, 6, 8)), 18, "classification"),
    "odenet_mnist": ("odenet_mnist", dict(solver="euler", controller="constant", dt=0.5), 12,
                     "classification"),
}
# Train steps that run by default (a few seconds to compile each); the others compile for 20-60 s
# on a 2-core CPU and run with -m slow. AlexNet and VGG hold 60-130M parameters whatever the
# image size (4096-wide classifiers): checked on shapes and HLO only.
RUN = ("full_resolution_fcn", "odenet", "odenet_mnist", "resnet", "segnet", "unet", "window_cnn",
       "yolo", "yolov1")
RUN_SLOW = ("cifar_resnet", "fcn", "googlenet", "ode_resnet", "odenet_patches")
NUM_CLASSES = 3
TX = optax.sgd(0.1, momentum=0.9)
BATCH = 2
_TENSOR = r"tensor<([^>]*)>"


def operand_types(hlo: str, op: str, full: bool = False) -> list[list[str]]:
  """Element types (`full`: whole types such as 2x8xbf16) [operands..., result] of every
  `stablehlo.<op>` in StableHLO text."""
  found = []
  for line in hlo.splitlines():
    if f"stablehlo.{op}" not in line:
      continue
    signature = re.search(rf": \(({_TENSOR}(?:, {_TENSOR})*)\) -> {_TENSOR}\s*$", line)
    assert signature, f"unparsed {op}: {line[:200]}"
    types = re.findall(_TENSOR, signature.group(0))
    found.append(types if full else [t.split("x")[-1] for t in types])
  return found


def compute_types(hlo: str) -> list[list[str]]:
  """Element types of every convolution's operands and result: XLA's convolutions, and the
  matmuls of the CPU's im2col ones (jaxvision.nn.conv) and of the dense layers. Matmuls at
  HIGHEST precision are left out: diffrax's float32 combinations of an ODE solver's stages."""
  matmuls = "\n".join(line for line in hlo.splitlines() if "precision = [HIGHEST" not in line)
  return operand_types(hlo, "convolution") + operand_types(matmuls, "dot_general")


def make_batch(task: str, size: int) -> dict:
  rs = np.random.RandomState(0)
  batch = {"image": jnp.asarray(rs.randn(BATCH, size, size, 3), jnp.float32)}
  if task == "classification":
    batch["label"] = jnp.asarray(rs.randint(0, NUM_CLASSES, BATCH), jnp.int32)
  elif task == "segmentation":
    batch["mask"] = jnp.asarray(rs.randint(0, NUM_CLASSES, (BATCH, size, size)), jnp.int32)
  else:
    batch["boxes"] = jnp.asarray([[[0.1, 0.1, 0.6, 0.5], [0.0, 0.0, 0.0, 0.0]]] * BATCH,
                                 jnp.float32)
    batch["classes"] = jnp.asarray([[1, 0]] * BATCH, jnp.int32)
    batch["valid"] = jnp.asarray([[True, False]] * BATCH)
  return batch


def make_task(task: str, model):
  if task == "classification":
    return Classification()
  if task == "segmentation":
    return Segmentation()
  return Detection(model, NUM_CLASSES)


def dtypes(tree) -> set[str]:
  return {str(a.dtype) for a in jax.tree.leaves(tree)}


class Case:
  """A bf16 model, its abstract state, train step, the step's StableHLO and output shapes."""

  def __init__(self, family: str):
    name, options, self.size, task = CASES[family]
    self.model = create_model(name, num_classes=NUM_CLASSES, dtype="bfloat16", **options)
    self.batch = make_batch(task, self.size)
    step = jax.jit(steps.make_train_step(make_task(task, self.model)))
    self.state = jax.eval_shape(self.init, jax.random.key(0))
    self.lowered = step.lower(self.state, self.batch, jax.random.key(0))
    self.hlo = self.lowered.as_text()
    self.new_state, self.metrics = self.lowered.out_info
    variables = {"params": self.state.params, "batch_stats": self.state.batch_stats}
    self.outputs = jax.eval_shape(lambda v, x: self.model.apply(v, x, train=False), variables,
                                  self.batch["image"])

  def init(self, rng):
    return create_train_state(self.model, TX, rng, (self.size, self.size, 3))


@functools.cache
def get_case(family: str) -> Case:
  return Case(family)


@pytest.fixture(params=sorted(CASES))
def case(request):
  return get_case(request.param)


def test_params_and_batch_stats_are_float32_before_and_after_a_step(case):
  assert dtypes(case.state.params) == {"float32"}
  assert dtypes(case.new_state.params) == {"float32"}
  assert dtypes(case.new_state.opt_state) <= {"float32", "int32"}
  if jax.tree.leaves(case.state.batch_stats):
    assert dtypes(case.state.batch_stats) == {"float32"}
    assert dtypes(case.new_state.batch_stats) == {"float32"}


def test_outputs_and_loss_are_float32(case):
  assert dtypes(case.outputs) == {"float32"}
  assert case.metrics["loss"].dtype == jnp.float32


def test_convolutions_compute_in_bfloat16(case):
  """Every convolution of the train step, forward and backward, has bf16 operands."""
  convs = compute_types(case.hlo)
  assert convs
  assert all(t == ["bf16", "bf16", "bf16"] for t in convs), convs


@pytest.mark.parametrize("family,kernel", [("odenet_patches", "81x8"), ("resnet", "72x8")])
def test_im2col_convolutions_are_bfloat16_matmuls(family, kernel):
  """Convolutions that run as im2col on the CPU (the ODE function's: 9 * (8 + 1 time channel)
  inputs; the ResNet's 4x4 maps: 9 * 8) are [B*H*W, 9 * C] x [9 * C, C'] bf16 matmuls, forward
  and backward."""
  if jax.default_backend() != "cpu":
    pytest.skip("im2col convolutions are the CPU's")
  shapes = [t for t in operand_types(get_case(family).hlo, "dot_general", full=True)
            if f"{kernel}x" in " ".join(t)]
  assert shapes and all(s.endswith("bf16") for t in shapes for s in t), shapes


def random_state(case: Case):
  """A real state of the case's shapes: N(0, 0.1) parameters, zero means, unit variances
  (jitting the model's init would double a test's compile time)."""
  rs = np.random.RandomState(0)
  params = jax.tree.map(lambda a: jnp.asarray(0.1 * rs.randn(*a.shape), a.dtype),
                        case.state.params)
  stats = jax.tree_util.tree_map_with_path(
      lambda path, a: jnp.full(a.shape, "var" in jax.tree_util.keystr(path), a.dtype),
      case.state.batch_stats)
  return TrainState.create(apply_fn=case.model.apply, params=params, batch_stats=stats,
                           tx=TX)


def train_once(family: str):
  """One compiled bf16 train step from a random state: its loss, the dtypes of the new
  parameters, and whether any parameter changed."""
  case = get_case(family)
  state = random_state(case)
  new_state, metrics = case.lowered.compile()(state, case.batch, jax.random.key(0))
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state.params, state.params)
  return float(metrics["loss"]), dtypes(new_state.params), any(jax.tree.leaves(changed))


@pytest.mark.parametrize("family", [*RUN, *(pytest.param(f, marks=pytest.mark.slow)
                                             for f in RUN_SLOW)])
def test_a_train_step_runs_with_a_finite_loss(family):
  loss, param_dtypes, changed = train_once(family)
  assert np.isfinite(loss)
  assert param_dtypes == {"float32"}
  assert changed


def test_float32_model_has_no_bfloat16_convolutions():
  model = create_model("resnet", num_classes=NUM_CLASSES, dtype="float32", **TINY_RESNET)
  x = jnp.zeros((BATCH, 8, 8, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  hlo = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).as_text()
  convs = compute_types(hlo)
  assert convs and all(t == ["f32", "f32", "f32"] for t in convs)


@pytest.mark.parametrize("name,expected", [("bfloat16", jnp.bfloat16), ("bf16", jnp.bfloat16),
                                           ("float32", jnp.float32), ("float16", jnp.float16)])
def test_dtype_string_is_converted(name, expected):
  assert create_model("resnet", num_classes=2, dtype=name, **TINY_RESNET).dtype == expected
  # Nested models get the converted dtype too.
  yolo = create_model("yolov1", num_classes=2, backbone="resnet", backbone_options=TINY_RESNET,
                      dtype=name)
  assert yolo.dtype == expected and yolo.backbone.dtype == expected


@pytest.mark.parametrize("name", ["int32", "bfloat", ""])
def test_bad_dtype_string_fails_naming_the_option(name):
  with pytest.raises(ValueError, match=f"dtype: .*got {name!r}"):
    create_model("resnet", num_classes=2, dtype=name, **TINY_RESNET)


# ----------------------------------------------------------- every registered model, bfloat16

DETECTOR_BACKBONE = dict(backbone="resnet", backbone_options=STRIDE32_RESNET)
RCNN_HEAD = dict(backbone="resnet", backbone_options=dict(stage_sizes=(1,), widths=(4,),
                                                          stem="cifar", stem_width=4),
                 representation_size=8, roi_batch_size=8, max_detections=6)
FASTER_RCNN = dict(backbone="resnet", backbone_options=dict(stage_sizes=(1, 1), widths=(4, 8),
                                                            stem="imagenet", stem_width=4),
                   anchor_sizes=(8, 12), aspect_ratios=(1.0,), anchor_offset=0.5,
                   representation_size=16, roi_output_size=3, roi_batch_size=8, max_detections=6,
                   rpn_pre_nms_top_n_test=24, rpn_post_nms_top_n_test=10)
PROPOSALS = dict(proposals=np.array([[[2.0, 2.0, 10.0, 10.0], [4.0, 2.0, 11.0, 12.0],
                                      [0.0, 0.0, 16.0, 16.0]]] * BATCH, np.float32),
                 proposal_valid=np.array([[True, True, False]] * BATCH))
ROLLED = dict(scan_unroll=1)  # the compiled stage loop stays rolled: deep ResNets compile fast
# name: (options, image size, channels, extra forward arguments). The torchvision-size models
# have no width option: they run at full width on small images (their parameters are real).
FORWARD = {
    "resnet": (TINY_RESNET, 8, 3, {}),
    **{f"cifar_resnet{d}": (ROLLED, 8, 3, {}) for d in (20, 32, 44, 56, 110, 1202)},
    **{f"resnet{d}": (ROLLED, 32, 3, {}) for d in (18, 34, 50, 101, 152)},
    "alexnet": ({}, 63, 3, {}),
    **{f"vgg{d}{bn}": ({}, 32, 3, {}) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "googlenet": ({}, 32, 3, {}),
    "odenet": (ODE, 8, 3, {}),
    "odenet_mnist": (dict(solver="euler", controller="constant", dt=0.5), 28, 1, {}),
    "ode_resnet": (CASES["ode_resnet"][1], 8, 3, {}),
    **{f"fcn{s}s": (DETECTOR_BACKBONE, 32, 3, {}) for s in (8, 16, 32)},
    "unet": (CASES["unet"][1], 8, 3, {}),
    "segnet": (CASES["segnet"][1], 8, 3, {}),
    "full_resolution_fcn": (CASES["full_resolution_fcn"][1], 8, 3, {}),
    "yolov1": (dict(backbone="resnet", backbone_options=TINY_RESNET, head_width=8, head_depth=1),
               8, 3, {}),
    "yolov2": (CASES["yolo"][1], 8, 3, {}),
    "faster_rcnn": (FASTER_RCNN, 32, 3, {}),
    "mask_rcnn": (dict(FASTER_RCNN, mask_width=8, mask_num_convs=1, mask_feature_level=0), 32, 3,
                  {}),
    "fast_rcnn": ({k: v for k, v in FASTER_RCNN.items() if not k.startswith("rpn_")}, 16, 3,
                  PROPOSALS),
    "rcnn": (dict(RCNN_HEAD, warp_size=8), 16, 3, PROPOSALS),
    "sppnet": (dict(RCNN_HEAD, levels=(1, 2)), 16, 3, PROPOSALS),
    "window_cnn": (dict(widths=(4, 6, 8)), 18, 3, {}),
}
# In evaluation with fresh BatchNorm statistics (mean 0, variance 1) the 600 blocks of
# ResNet-1202 overflow, in float32 as in bfloat16: its forward uses batch statistics.
BATCH_STATISTICS = {"cifar_resnet1202"}


def he_variables(abstract) -> dict:
  """Variables of the abstract tree's shapes without compiling `init`: He-normal kernels, zero
  biases, unit BatchNorm scales and variances, zero means."""
  rng = np.random.default_rng(0)

  def fill(path, a):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(a.shape[:-1])) // (a.shape[0] if len(a.shape) in (3, 5) else 1)
      return rng.standard_normal(a.shape, np.float32) * np.float32(np.sqrt(2 / max(fan_in, 1)))
    return np.full(a.shape, name in ("scale", "var"), np.float32)
  return jax.tree_util.tree_map_with_path(fill, abstract)


def test_every_registered_model_has_a_bfloat16_case():
  from jaxvision.models import list_models
  assert sorted(FORWARD) == sorted(list_models())


@pytest.mark.parametrize("name", sorted(FORWARD))
def test_every_registered_model_runs_a_bfloat16_forward(name):
  """bf16 compute (every convolution of the forward), float32 parameters and BatchNorm
  statistics, and finite float32 outputs."""
  options, size, channels, extra = FORWARD[name]
  model = create_model(name, num_classes=NUM_CLASSES, dtype="bfloat16", **options)
  assert model.dtype == jnp.bfloat16
  x = jnp.asarray(np.random.RandomState(0).randn(BATCH, size, size, channels), jnp.float32)
  abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False, **extra), x)
  assert dtypes(abstract["params"]) == {"float32"}
  assert dtypes(abstract.get("batch_stats", {})) <= {"float32"}
  if name in BATCH_STATISTICS:
    forward = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"], **extra))
  else:
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False, **extra))
  compiled = forward.lower(abstract, x)
  convs = compute_types(compiled.as_text())
  assert convs and all(t == ["bf16", "bf16", "bf16"] for t in convs), convs
  out = compiled.compile()(he_variables(abstract), x)
  if name in BATCH_STATISTICS:
    out, updates = out
    assert dtypes(updates["batch_stats"]) == {"float32"}
  floats = [a for a in jax.tree.leaves(out) if jnp.issubdtype(a.dtype, jnp.floating)]
  assert floats and {str(a.dtype) for a in floats} == {"float32"}
  bad = [a.shape for a in floats if not np.isfinite(np.asarray(a)).all()]
  assert not bad, f"non-finite outputs of shapes {bad}"
