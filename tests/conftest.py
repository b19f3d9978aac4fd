"""Shared fixtures: the offline digits data and tiny `shapes` builds (built once per test worker);
TFDS mock boxes."""

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A TFDS data_dir holding the prepared `digits` dataset."""
  import tensorflow_datasets as tfds

  import jaxvision.data  # noqa: F401  (registers the builder, keeps TFDS offline)

  data_dir = tmp_path_factory.mktemp("tfds")
  tfds.builder("digits", data_dir=str(data_dir)).download_and_prepare()
  return str(data_dir)


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
  """`build(config, name)`: prepares the `shapes` variant `config` (once per worker) and returns
  (its data_dir, a detection spec `name` that reads it as `shapes_detection/64` reads shapes/64).
  Register the spec in `jaxvision.data.detection.DATASETS` (monkeypatch) to read it by name."""
  import dataclasses

  import tensorflow_datasets as tfds

  from jaxvision.data import detection
  built = {}

  def build(config, name: str):
    if config.name not in built:
      data_dir = str(tmp_path_factory.mktemp(f"tfds_{config.name}"))
      tfds.builder("shapes", config=config, data_dir=data_dir).download_and_prepare()
      built[config.name] = data_dir
    source = f"shapes/{config.name}"
    spec = dataclasses.replace(detection.DATASETS["shapes_detection/64"], name=name,
                               train=((source, "train"),), eval=(source, "test"),
                               image_size=config.image_size, offline_build=False)
    return built[config.name], spec

  return build


@pytest.fixture
def ordered_mock_boxes(monkeypatch):
  """TFDS's mock data draws the four box coordinates independently: order them as real data is."""
  import tensorflow as tf

  from jaxvision.data import detection
  fields = detection._fields

  def ordered(ex, s):
    out = fields(ex, s)
    b = out["boxes"]
    out["boxes"] = tf.concat([tf.minimum(b[:, :2], b[:, 2:]), tf.maximum(b[:, :2], b[:, 2:])], 1)
    return out

  monkeypatch.setattr(detection, "_fields", ordered)
