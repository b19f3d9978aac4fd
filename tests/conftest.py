"""Shared fixtures: the offline digits data and tiny `shapes` builds (built once per test worker);
TFDS mock boxes."""

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A TFDS data_dir holding the prepared `digits` dataset (skips where TFDS is not installed:
  the core tests also run in .ci/run's venv of the oldest versions, which has no TensorFlow)."""
  tfds = pytest.importorskip("tensorflow_datasets")

  import jaxvision.data.builders  # noqa: F401  (registers the builders, keeps TFDS offline)

  data_dir = tmp_path_factory.mktemp("tfds")
  tfds.builder("digits", data_dir=str(data_dir)).download_and_prepare()
  return str(data_dir)


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
  """`build(config, name)`: prepares the `shapes` variant `config` (once per worker) and returns
  (its data_dir, a detection spec `name` that reads it as `shapes_detection/64` reads shapes/64).
  Register the spec in `jaxvision.data.detection.DATASETS` (monkeypatch) to read it by name."""
  import dataclasses

  tfds = pytest.importorskip("tensorflow_datasets")

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


def order_mock_boxes(fields):
  """`detection._fields` with each box's corners ordered: TFDS's mock data draws the four box
  coordinates independently (also used by test_eight_devices' worker)."""
  import tensorflow as tf

  def ordered(ex, s):
    out = fields(ex, s)
    b = out["boxes"]
    out["boxes"] = tf.concat([tf.minimum(b[:, :2], b[:, 2:]), tf.maximum(b[:, :2], b[:, 2:])], 1)
    return out

  return ordered


@pytest.fixture
def ordered_mock_boxes(monkeypatch):
  """TFDS's mock data draws the four box coordinates independently: order them as real data is."""
  from jaxvision.data import detection
  monkeypatch.setattr(detection, "_fields", order_mock_boxes(detection._fields))
