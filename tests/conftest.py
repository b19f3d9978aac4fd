"""Shared fixtures: the offline digits data, built once per test worker."""

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A TFDS data_dir holding the prepared `digits` dataset."""
  import tensorflow_datasets as tfds

  import jaxvision.data  # noqa: F401  (registers the builder, keeps TFDS offline)

  data_dir = tmp_path_factory.mktemp("tfds")
  tfds.builder("digits", data_dir=str(data_dir)).download_and_prepare()
  return str(data_dir)
