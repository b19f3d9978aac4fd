"""Every bad config value is refused before anything is built, one house-style line each, all
problems of a config reported together (jaxvision.training.config.validate_config)."""

import ml_collections
import pytest

from jaxvision.training.config import (ConfigError, check_config, default_config, expected_type,
                                       key_error, validate_config)
from jaxvision.training.fit import fit


def config_with(type_safe=True, **changes):
  """default_config() with `changes` ({"optimizer.learning_rate": -0.1}); type_safe=False lets a
  value of another type in (as a config built by hand could hold)."""
  c = default_config()
  if not type_safe:
    c = ml_collections.ConfigDict(c.to_dict(), type_safe=False)
  for path, value in changes.items():
    *parents, key = path.split(".")
    node = c
    for part in parents:
      node = node[part]
    node[key] = value
  return c


def test_the_defaults_are_valid():
  assert validate_config(default_config()) == []
  check_config(default_config())
  assert default_config().resume_with_changes is False


@pytest.mark.parametrize("path,value,expected", [
    ("optimizer.learning_rate", -0.1, "a number > 0"),
    ("optimizer.learning_rate", 0.0, "a number > 0"),
    ("optimizer.momentum", -0.5, "a number in [0, 1)"),
    ("optimizer.momentum", 1.0, "a number in [0, 1)"),
    ("optimizer.b2", 1.5, "a number in [0, 1)"),
    ("optimizer.weight_decay", -1e-4, "a number >= 0"),
    ("optimizer.l1", -1.0, "a number >= 0"),
    ("optimizer.warmup_epochs", -1.0, "a number >= 0"),
    ("optimizer.step_epochs", (0.75, 0.5), "increasing fractions of training in (0, 1)"),
    ("optimizer.step_epochs", (0.5, 1.0), "increasing fractions of training in (0, 1)"),
    ("optimizer.step_factor", 0.0, "a number > 0"),
    ("optimizer.grad_clip_norm", -1.0, "a number >= 0 (0: off)"),
    ("label_smoothing", 1.0, "a number in [0, 1)"),
    ("label_smoothing", 2.0, "a number in [0, 1)"),
    ("num_epochs", -1.0, "a number > 0 (or num_train_steps >= 1)"),
    ("num_epochs", 0.0, "a number > 0 (or num_train_steps >= 1)"),
    ("num_train_steps", 0, "-1 (train num_epochs) or an integer >= 1"),
    ("log_every_steps", 0, "an integer >= 1"),
    ("eval_every_steps", 0, "-1 (once per epoch) or an integer >= 1"),
    ("checkpoint_every_steps", -2, "-1 (once per epoch) or an integer >= 1"),
    ("keep_checkpoints", 0, "an integer >= 1"),
    ("batch_size", 0, "an integer >= 1"),
    ("eval_batch_size", -8, "an integer >= 1"),
    ("finetune.backbone_lr_scale", -0.5, "a number >= 0 (0 freezes the backbone)"),
    ("finetune.freeze", "layer(1", "a regular expression ('': none)"),
    ("dataset.shuffle_buffer", 0, "an integer >= 1"),
    ("dataset.crop_padding", -2, "an integer >= -1 (-1: the dataset's default)"),
    ("distributed.process_id", -2, "an integer >= -1 (-1: detect)"),
    ("distributed.local_device_ids", (0, 0), "distinct device ids (integers >= 0)"),
    ("distributed.coordinator_address", "10.0.0.1", "'' (detect) or 'host:port'"),
    ("log_intermediates", ("nfe", ""), "a tuple of names (non-empty strings)"),
    ("best_metric", "", "the name of an eval metric"),
])
def test_values_out_of_range_are_refused(path, value, expected):
  assert validate_config(config_with(**{path: value})) == [
      f"config.{path}: got {value!r}; expected {expected}"]


@pytest.mark.parametrize("path,value,expected", [
    ("optimizer.name", "adam", "one of ['adamw', 'sgd'] (closest: 'adamw')"),
    ("optimizer.schedule", "cosin", "one of ['constant', 'cosine', 'step'] (closest: 'cosine')"),
    ("parallel", "pmapp", "one of ['jit', 'pmap'] (closest: 'pmap')"),
    ("distributed.initialize", "yes", "one of ['auto', 'off', 'on']"),
    ("task", "clasification", "one of ['classification', 'detection', 'instance_segmentation', "
                              "'multilabel_classification', 'rcnn_detection', 'segmentation'] "
                              "(closest: 'classification', 'multilabel_classification')"),
])
def test_names_that_are_not_among_the_allowed_ones_are_refused(path, value, expected):
  assert validate_config(config_with(**{path: value})) == [
      f"config.{path}: got {value!r}; expected {expected}"]


def test_an_unknown_model_names_the_closest_ones():
  errors = validate_config(config_with(**{"model.name": "resnet5"}))
  assert len(errors) == 1
  assert errors[0].startswith("config.model.name: got 'resnet5'; expected one of ")
  assert "'resnet50'" in errors[0]


@pytest.mark.parametrize("path,value,expected", [
    ("seed", "0", "an integer"),
    ("batch_size", 64.0, "an integer"),
    ("optimizer.learning_rate", "0.1", "a number"),
    ("plot", 1, "True or False"),
    ("dataset.data_dir", 3, "a string or None"),
    ("dataset.flip", "yes", "True or False or None"),
    ("optimizer", 3, "a group of keys (a ConfigDict)"),
    ("optimizer.step_epochs", 0.5, "a tuple"),
])
def test_values_of_the_wrong_type_are_refused(path, value, expected):
  assert expected_type(path) == expected
  assert validate_config(config_with(type_safe=False, **{path: value})) == [
      f"config.{path}: got {value!r}; expected {expected}"]


@pytest.mark.parametrize("path,line", [
    ("optimizer.lerning_rate", "config.optimizer.lerning_rate: unknown key; did you mean "
                               "learning_rate?"),
    ("optimiser", "config.optimiser: unknown key; did you mean optimizer?"),
    ("log_every_step", "config.log_every_step: unknown key; did you mean log_every_steps?"),
])
def test_unknown_keys_name_the_closest_known_key(path, line):
  c = config_with(type_safe=False)
  c.unlock()
  *parents, key = path.split(".")
  node = c
  for part in parents:
    node = node[part]
  node[key] = 1
  assert validate_config(c) == [line]
  assert key_error(path) == line  # the same line for a key given on the command line


def test_command_line_keys_are_checked_against_the_config():
  assert key_error("optimizer.learning_rate") is None and key_error("optimizer") is None
  assert key_error("model.options.anything") is None  # the model's options: checked later
  assert key_error("optimiser.momentum") == ("config.optimiser.momentum: unknown key; did you "
                                             "mean optimizer.momentum?")
  assert key_error("batch_size.x") == ("config.batch_size.x: unknown key; config.batch_size is a "
                                       "value, not a group of keys")
  assert key_error("zzz").startswith("config.zzz: unknown key; expected one of the keys of "
                                     "config: ")


def test_a_missing_key_is_refused():
  c = config_with(type_safe=False)
  del c.optimizer["momentum"]
  assert validate_config(c) == ["config.optimizer.momentum: missing; expected every key of "
                                "default_config() (start a config from it)"]


@pytest.mark.parametrize("options,line", [
    ({"widht": 3}, "config.model.options.widht: unknown option of model 'resnet'; did you mean "
                   "widths? expected some of ['bottleneck', 'dtype', 'final_survival_prob', "
                   "'remat', 'scan', 'scan_unroll', 'share_weights', 'shortcut', 'stage_sizes', "
                   "'stem', 'stem_width', 'step_size', 'stochastic_depth', 'widths', "
                   "'zero_init_residual']"),
    ({"num_classes": 3}, "config.model.options.num_classes: set by the run (from the dataset and "
                         "config.parallel); expected it not among the options"),
    ({"dtype": "bf17"}, "config.model.options.dtype: got 'bf17'; expected a floating-point dtype "
                        "name such as 'bfloat16', 'float16' or 'float32'"),
])
def test_model_options_are_checked_against_the_model(options, line):
  c = config_with(**{"model.name": "resnet"})
  for key, value in options.items():
    c.model.options[key] = value
  assert validate_config(c) == [line]


def test_valid_model_options_pass():
  c = config_with(**{"model.name": "resnet"})
  c.model.options.dtype = "bf16"
  c.model.options.stage_sizes = (1, 1)
  assert validate_config(c) == []


def test_keys_that_depend_on_each_other():
  # Epochs do not matter once num_train_steps is set.
  assert validate_config(config_with(num_epochs=0.0, num_train_steps=10)) == []
  assert validate_config(config_with(**{"optimizer.warmup_epochs": 40.0})) == [
      "config.optimizer.warmup_epochs: got 40.0; expected a number in [0, num_epochs = 30.0]"]
  assert validate_config(config_with(**{"distributed.num_processes": 2,
                                        "distributed.process_id": 2})) == [
      "config.distributed.process_id: got 2; expected -1 (detect) or below num_processes = 2"]


def test_every_problem_is_reported_together_before_anything_is_built(tmp_path):
  c = config_with(log_every_steps=0, label_smoothing=2.0, **{"optimizer.learning_rate": -0.1})
  c.dataset.data_dir = str(tmp_path / "no_data")  # never read: the config is refused first
  with pytest.raises(ConfigError) as e:
    fit(c, tmp_path / "run", progress=False)
  assert isinstance(e.value, ValueError)
  assert e.value.errors == ["config.optimizer.learning_rate: got -0.1; expected a number > 0",
                            "config.label_smoothing: got 2.0; expected a number in [0, 1)",
                            "config.log_every_steps: got 0; expected an integer >= 1"]
  assert str(e.value).splitlines() == e.value.errors
  assert not (tmp_path / "run").exists()
