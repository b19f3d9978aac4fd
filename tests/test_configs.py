"""Every config in jaxvision/configs loads, passes the config check, names a registered model, and
(for the real datasets, through tfds.testing.mock_data) trains two steps end to end."""

import importlib

import pytest
import tensorflow_datasets as tfds

from jaxvision import configs
from jaxvision.models import create_model
from jaxvision.training.config import check_config
from jaxvision.training.fit import fit

CONFIGS = configs.names()


def load(name):
  return importlib.import_module(f"jaxvision.configs.{name}").get_config()


def test_a_config_is_named_by_its_file_name_or_given_as_a_file(tmp_path):
  assert {"demo", "cifar10", "depth_study", "yolo_shapes"} <= set(CONFIGS)
  assert "__init__" not in CONFIGS
  demo = str(configs.FOLDER / "demo.py")
  assert configs.path("demo") == configs.path("demo.py") == demo
  assert configs.path("depth_study:mnist") == f"{configs.FOLDER / 'depth_study.py'}:mnist"
  own = tmp_path / "mine.py"
  own.write_text("")
  assert configs.path(str(own)) == str(own) and configs.path(f"{own}:x") == f"{own}:x"
  with pytest.raises(ValueError, match=r"^--config: got 'nope'; expected a config file or one "
                                       r"of \['cifar10', 'cifar100', "):
    configs.path("nope")
  argv = ["prog", "--config", "demo", "--workdir", "w", "--config.batch_size=8"]
  assert configs.resolve_argv(argv) == (["prog", "--config", demo, "--workdir", "w",
                                         "--config.batch_size=8"], demo)
  assert configs.resolve_argv(["prog", "--config=depth_study:mnist"]) == (
      ["prog", f"--config={configs.FOLDER / 'depth_study.py'}:mnist"],
      str(configs.FOLDER / "depth_study.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_valid(name):
  study = load(name)
  c = study.train if "train" in study else study  # a study's training config
  check_config(c)
  create_model(c.model.name, num_classes=10, **c.model.options)
  for arm in study.get("arms", {}).values():  # a seeded study's arms: each a model of its own
    create_model(arm["name"], num_classes=10, **dict(c.model.options, **arm["options"]))


@pytest.mark.parametrize("name,model", [("mnist", None), ("cifar10", "cifar_resnet20"),
                                        ("cifar100", "cifar_resnet20"), ("imagenet2012", "resnet18")])
def test_real_data_config_trains_on_mock_data(name, model, tmp_path):
  c = load(name)
  c.model.name = model or c.model.name  # a smaller member of the same family: compile time
  c.dataset.data_dir = str(tmp_path / "data")
  if name == "imagenet2012":
    c.dataset.image_size = 32
  c.batch_size = c.eval_batch_size = 4
  c.num_train_steps = 2
  c.plot = False
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = fit(c, tmp_path / "run", progress=False)
  assert summary["steps"] == 2 and summary["dataset"] == name
  assert 0.0 <= summary["eval_accuracy"] <= 1.0
  assert (tmp_path / "run" / "checkpoints" / "2").exists()
