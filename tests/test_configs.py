"""Every config in train/configs loads, passes the config check, names a registered model, and
(for the real datasets, through tfds.testing.mock_data) trains two steps end to end."""

import importlib
import pathlib

import pytest
import tensorflow_datasets as tfds

from jaxvision.models import create_model
from jaxvision.training.config import check_config
from jaxvision.training.fit import fit

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "train" / "configs").glob("*.py")
                 if p.stem != "__init__")


def load(name):
  return importlib.import_module(f"train.configs.{name}").get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_valid(name):
  c = load(name)
  if "model" in c and "options" in c.model:  # training configs (a sweep config may differ)
    check_config(c)
    create_model(c.model.name, num_classes=10, **c.model.options)


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
