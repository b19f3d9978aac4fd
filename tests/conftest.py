"""Shared fixtures: the offline digits data (built once per test worker); TFDS mock boxes."""

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A TFDS data_dir holding the prepared `digits` dataset."""
  import tensorflow_datasets as tfds

  import jaxvision.data  # noqa: F401  (registers the builder, keeps TFDS offline)

  data_dir = tmp_path_factory.mktemp("tfds")
  tfds.builder("digits", data_dir=str(data_dir)).download_and_prepare()
  return str(data_dir)


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
