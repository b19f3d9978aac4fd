"""Transfer learning: a new head on pretrained weights, frozen parts, lower backbone learning
rate, frozen BatchNorm, and the fine-tuning config run through the fit loop."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.models.resnet import ResNet
from jaxvision.training import finetune, steps
from jaxvision.training.fit import fit
from jaxvision.training.train_state import TrainState

REPO = pathlib.Path(__file__).parents[1]


def tiny(num_classes):
  return ResNet(stage_sizes=(1, 1), widths=(4, 8), num_classes=num_classes, stem="cifar", stem_width=4)


def random_variables(model, seed):
  """Variables of `model` filled from numpy (no init to compile); BatchNorm variances > 0."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False))
  rs = np.random.RandomState(seed)
  fill = lambda p, s: (np.abs(rs.randn(*s.shape)) + 0.5 if p[-1].key == "var" else 0.3 * rs.randn(*s.shape))
  return jax.tree_util.tree_map_with_path(lambda p, s: jnp.asarray(fill(p, s), jnp.float32), shapes)


@pytest.fixture(scope="module")
def pretrained():
  """Variables of a 5-class tiny ResNet with non-trivial BatchNorm statistics."""
  return random_variables(tiny(5), 0)


@pytest.fixture(scope="module")
def fresh():
  """A fresh init of the 3-class model (the fine-tuning target)."""
  return random_variables(tiny(3), 1)


@pytest.fixture(scope="module")
def batch():
  rs = np.random.RandomState(0)
  return {"image": rs.randn(16, 8, 8, 1).astype(np.float32), "label": rs.randint(0, 3, 16).astype(np.int32)}


def flat(tree):
  return {finetune.path_str(p): np.asarray(a) for p, a in jax.tree_util.tree_leaves_with_path(tree)}


def test_path_patterns_select_whole_modules():
  assert finetune.path_matches("fc/kernel", "fc")
  assert not finetune.path_matches("fc2/kernel", "fc")
  assert finetune.path_matches("layer1/blocks/block/branch/conv1/kernel", "conv1|layer1")
  assert not finetune.path_matches("layer2_transition/proj_bn/scale", "layer2")
  assert finetune.path_matches("layer2_transition/proj_bn/scale", "layer2.*")
  assert not finetune.path_matches("fc/kernel", "")
  mask = finetune.path_mask({"fc": {"kernel": 1, "bias": 2}, "conv1": {"kernel": 3}}, "fc")
  assert mask == {"fc": {"kernel": True, "bias": True}, "conv1": {"kernel": False}}
  assert [finetune.default_head(n) for n in ("resnet50", "vgg16_bn", "alexnet", "googlenet")] == [
      "fc", "classifier_6", "classifier_6", "fc|aux[12]/fc2"]
  with pytest.raises(ValueError, match=r"finetune.head: no default head for model 'unet'"):
    finetune.default_head("unet")


def test_new_head_on_pretrained_weights(pretrained, fresh):
  v = finetune.with_pretrained(fresh, pretrained, head="fc")
  got, old, new = flat(v), flat(pretrained), flat(fresh)
  assert got["params/fc/kernel"].shape == (8, 3)
  np.testing.assert_array_equal(got["params/fc/kernel"], new["params/fc/kernel"])
  for path, a in got.items():
    if not path.startswith("params/fc/"):
      np.testing.assert_array_equal(a, old[path], err_msg=path)


def test_pretrained_variables_that_do_not_fit_are_listed(pretrained, fresh):
  bad = jax.tree.map(lambda a: a, pretrained)
  del bad["params"]["conv1"]
  bad["batch_stats"]["bn1"]["mean"] = jnp.zeros(7)
  bad["params"]["extra"] = {"kernel": jnp.zeros(2)}
  with pytest.raises(ValueError) as e:
    finetune.with_pretrained(fresh, bad, head="fc")
  msg = str(e.value)
  assert "1 missing: ['params/conv1/kernel']" in msg
  assert "batch_stats/bn1/mean: pretrained (7,), model (4,)" in msg
  assert "1 unexpected: ['params/extra/kernel']" in msg


def test_lower_backbone_learning_rate_and_frozen_parts():
  params = {"fc": {"kernel": jnp.ones((2, 2))}, "conv1": {"kernel": jnp.ones((2, 2))},
            "layer1": {"kernel": jnp.ones((2, 2))}}
  tx = finetune.partition_optimizer(optax.sgd(1.0), head="fc", backbone_lr_scale=0.1, freeze="conv1")
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates["fc"]["kernel"], -1.0)
  np.testing.assert_allclose(updates["layer1"]["kernel"], -0.1, rtol=1e-6)
  np.testing.assert_array_equal(updates["conv1"]["kernel"], 0.0)
  plain = optax.sgd(1.0)
  assert finetune.partition_optimizer(plain, head="fc") is plain  # defaults: unchanged
  with pytest.raises(ValueError, match=r"backbone_lr_scale: expected a value >= 0, got -1"):
    finetune.partition_optimizer(plain, head="fc", backbone_lr_scale=-1)


@pytest.fixture(scope="module")
def head_only_state(pretrained, fresh):
  """A train state of the 3-class model on the pretrained weights, training the head only."""
  tx = finetune.partition_optimizer(optax.adamw(0.05, weight_decay=0.1), head="fc", backbone_lr_scale=0.0)
  v = finetune.with_pretrained(fresh, pretrained, "fc")
  return TrainState.create(apply_fn=tiny(3).apply, params=v["params"], batch_stats=v["batch_stats"], tx=tx)


@pytest.mark.parametrize("freeze_batch_norm", [True, False])
def test_head_only_training_changes_only_the_head(head_only_state, batch, freeze_batch_norm):
  start = head_only_state
  if freeze_batch_norm:
    start = start.replace(apply_fn=finetune.frozen_batch_norm(start.apply_fn))
  step = jax.jit(steps.make_train_step(l1=1e-3))
  end = start
  for _ in range(3):
    end, metrics = step(end, batch, jax.random.key(0))
  assert np.isfinite(float(metrics["loss"]))
  before, after = flat(start.params), flat(end.params)
  changed = {p for p in before if not np.array_equal(before[p], after[p])}
  assert changed == {"fc/kernel", "fc/bias"}  # weight decay and L1 leave frozen weights alone
  stats_before, stats_after = flat(start.batch_stats), flat(end.batch_stats)
  stats_changed = {p for p in stats_before if not np.array_equal(stats_before[p], stats_after[p])}
  assert stats_changed == (set() if freeze_batch_norm else set(stats_before))


def test_frozen_batch_norm_normalises_with_the_running_statistics(pretrained):
  model = tiny(5)
  x = jnp.asarray(np.random.RandomState(2).randn(4, 8, 8, 1), jnp.float32)
  frozen = finetune.frozen_batch_norm(model.apply)
  out, updates = frozen(pretrained, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out, model.apply(pretrained, x, train=False), rtol=1e-5, atol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], pretrained["batch_stats"])
  live, _ = model.apply(pretrained, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(live, out)  # without freezing, training mode uses batch statistics


def load_config(name):
  spec = importlib.util.spec_from_file_location(name, REPO / "train" / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def shorten(c, data_dir, steps):
  c.dataset.data_dir = str(data_dir)
  c.num_train_steps = steps
  c.batch_size = 32
  c.eval_batch_size = 360
  c.log_every_steps = steps
  c.plot = False
  return c


@pytest.mark.slow  # two fit runs (~60 s on 2 CPU cores)
def test_finetune_digits_config_trains_only_the_unfrozen_parameters(tmp_path, digits_dir,
                                                                     monkeypatch):
  pre = shorten(load_config("demo"), digits_dir, 2)
  fit(pre, tmp_path / "pre", progress=False)
  c = shorten(load_config("finetune_digits"), digits_dir, 2)
  assert (c.model.pretrained, c.finetune.freeze_batch_norm) == ("runs/resnet20_digits", True)
  monkeypatch.chdir(tmp_path)
  c.model.pretrained = "pre"  # relative to the working directory, as the config's own default
  c.finetune.backbone_lr_scale = 0.0  # head only
  fit(c, tmp_path / "ft", progress=False)
  old = finetune.load_pretrained(tmp_path / "pre", "cifar_resnet20")  # a workdir's latest step
  new = finetune.load_pretrained(tmp_path / "ft" / "checkpoints", "cifar_resnet20")
  before, after = flat(old["params"]), flat(new["params"])
  changed = {p for p in before if not np.array_equal(before[p], after[p])}
  assert changed == {"fc/kernel", "fc/bias"}
  jax.tree.map(np.testing.assert_array_equal, new["batch_stats"], old["batch_stats"])
  assert sorted(p.name for p in (tmp_path / "ft" / "checkpoints").iterdir()) == ["2"]


@pytest.mark.parametrize("model_name", ["faster_rcnn", "yolov2", "fcn8s"])
def test_torchvision_weights_fill_the_backbone_of_detectors_and_segmenters(model_name):
  """`model.pretrained` with a model on `backbone`: the torchvision classifier's weights land in
  `backbone` (its fc left out); the new layers keep their initialisation and are the head."""
  from jaxvision.convert import from_torchvision
  from jaxvision.models import create_model
  from jaxvision.training.config import default_config

  weights = REPO.parent / "shared" / "fixtures" / "torchvision_resnet18.safetensors"
  assert weights.exists(), f"missing fixture {weights} (../shared beside the repository)"
  c = default_config()
  c.model.name = model_name
  c.model.options.backbone = "resnet18"
  c.model.pretrained = str(weights)
  model = create_model(model_name, num_classes=3, backbone="resnet18")
  fresh = jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "sampling": jax.random.key(1)},
                                            jnp.zeros((1, 64, 64, 3)), train=False))
  head = finetune.head_pattern(c)
  out = finetune.with_pretrained(fresh, finetune.load_pretrained_for(c), head)
  torch_resnet = from_torchvision("resnet18", weights)
  np.testing.assert_array_equal(out["params"]["backbone"]["conv1"]["kernel"],
                                torch_resnet["params"]["conv1"]["kernel"])
  np.testing.assert_array_equal(out["batch_stats"]["backbone"]["bn1"]["mean"],
                                torch_resnet["batch_stats"]["bn1"]["mean"])
  new = [k for k in out["params"] if k != "backbone"]
  assert new and all(isinstance(out["params"][k], dict) for k in new)
  assert all(finetune.path_matches(f"{k}/x", head) for k in new)
  assert not finetune.path_matches("backbone/conv1/kernel", head)
