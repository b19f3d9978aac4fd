"""The `clutter10` TFDS builder: features, reproducible bytes, balanced classes, the pipeline, and
that no per-channel image statistic gives the class away."""

import hashlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

import jaxvision.data  # noqa: F401  (registers the builders, keeps TFDS offline)
from jaxvision import data
from jaxvision.data.builders import clutter10
from jaxvision.data.config import default_dataset_config

TINY = "clutter10/tiny"


def _build(data_dir):
  builder = tfds.builder(TINY, data_dir=str(data_dir))
  builder.download_and_prepare()
  return builder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds_clutter10")
  _build(data_dir)
  return str(data_dir)


def _read(data_dir, split):
  builder = tfds.builder(TINY, data_dir=data_dir)
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def _files_digest(builder):
  """SHA-256 over the split files (the TFRecords: every stored byte of every example)."""
  digest = hashlib.sha256()
  for path in sorted(builder.data_path.glob("*.tfrecord*")):
    digest.update(path.name.encode())
    digest.update(path.read_bytes())
  return digest.hexdigest()


def test_features_configs_and_registration():
  spec = data.get_spec("clutter10")
  assert spec.offline_build and spec.num_classes == 10 and spec.image_shape == (32, 32, 3)
  assert spec.crop == "pad" and spec.crop_padding == 4 and spec.flip
  builder = tfds.builder("clutter10")
  assert builder.builder_config.name == "default"
  assert (builder.builder_config.num_train, builder.builder_config.num_test) == (20_000, 2_000)
  assert builder.info.features["image"].shape == (32, 32, 3)
  assert builder.info.features["image"].dtype == np.uint8
  assert builder.info.features["label"].names == list(clutter10.CLASSES)


def test_tiny_build_is_balanced_uint8_and_stores_the_rendered_examples(tiny_dir):
  config = tfds.builder(TINY, data_dir=tiny_dir).builder_config
  for split, count in (("train", config.num_train), ("test", config.num_test)):
    examples = _read(tiny_dir, split)
    assert len(examples) == count
    labels = np.array([ex["label"] for ex in examples])
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, count // 10))
    stored = {ex["image"].tobytes(): int(ex["label"]) for ex in examples}
    for index in range(count):  # PNG is lossless: exactly what `render` draws, in some order
      image, label = clutter10.render(config, split, index)
      assert image.shape == (32, 32, 3) and image.dtype == np.uint8
      assert stored[image.tobytes()] == label == index % 10


def test_two_builds_give_identical_bytes(tiny_dir, tmp_path):
  first = tfds.builder(TINY, data_dir=tiny_dir)
  second = _build(tmp_path)
  assert _files_digest(first) == _files_digest(second)
  config = first.builder_config
  a, _ = clutter10.render(config, "train", 7)
  np.testing.assert_array_equal(a, clutter10.render(config, "train", 7)[0])
  assert not np.array_equal(a, clutter10.render(config, "test", 7)[0])
  reseeded = clutter10.Clutter10Config(name="other", seed=1)
  assert not np.array_equal(a, clutter10.render(reseeded, "train", 7)[0])


def test_pipeline_yields_batches(tiny_dir, monkeypatch):
  # The registered spec reads `clutter10` (the 20,000-image default): point it at the tiny build.
  import dataclasses
  from jaxvision.data import datasets
  spec = dataclasses.replace(datasets.DATASETS["clutter10"], tfds_name=TINY, offline_build=False)
  monkeypatch.setitem(datasets.DATASETS, "clutter10", spec)
  config = default_dataset_config()
  config.name, config.data_dir = "clutter10", tiny_dir
  info = data.dataset_info(config)
  assert (info.num_classes, info.image_shape, info.num_train, info.num_eval) == (
      10, (32, 32, 3), 40, 20)
  batch = next(data.train_batches(config, global_batch_size=16, seed=0, normalize=False))
  assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (16,) and 0 <= batch["label"].min() <= batch["label"].max() < 10
  batches = list(data.eval_batches(config, global_batch_size=8))
  assert sum(int(b["weight"].sum()) for b in batches) == 20


def test_per_channel_statistics_do_not_give_the_class_away():
  """A logistic regression on each image's per-channel means and standard deviations stays
  near chance (10%): the classes differ in how their parts are arranged, not in colour."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  config = clutter10.Clutter10Config(name="probe")

  def features(split, count):
    x, y = [], []
    for index in range(count):
      image, label = clutter10.render(config, split, index)
      pixels = image.reshape(-1, 3).astype(np.float64)
      x.append(np.concatenate([pixels.mean(0), pixels.std(0)]))
      y.append(label)
    return np.array(x), np.array(y)

  probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
  probe.fit(*features("train", 1500))
  assert probe.score(*features("test", 500)) < 0.2
