"""Tests of jaxvision.data: the digits builder and the TFDS input pipelines."""

import hashlib
import importlib.util
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from jaxvision import data
from jaxvision.data.builders import digits as digits_builder
import tensorflow_datasets as tfds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = data.get_spec("digits")


def _config(name="digits", **overrides) -> ml_collections.ConfigDict:
  fields = dict(name=name, data_dir=None, image_size=0, crop_padding=-1,
                flip=None, shuffle_buffer=10_000)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _to_pixels(images, spec):
  """Undoes the normalisation; returns uint8 after checking values are integral."""
  pixels = (images * np.asarray(spec.std) + np.asarray(spec.mean)) * 255.0
  np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
  return np.round(pixels).astype(np.uint8)


def _split(data_dir, split):
  """All examples of a prepared digits split, in stored order."""
  builder = tfds.builder("digits", data_dir=data_dir)
  examples = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
  images = np.stack([e["image"] for e in examples])
  labels = np.array([e["label"] for e in examples])
  return images, labels


def _keys(images, labels):
  """Sorted multiset of (label, image bytes), for order-free comparison."""
  return sorted((int(l), i.tobytes()) for i, l in zip(images, labels))


def test_import_is_offline_and_registers_digits():
  from tensorflow_datasets.core.utils import gcs_utils
  assert gcs_utils._is_gcs_disabled  # pylint: disable=protected-access
  assert "digits" in tfds.list_builders(with_community_datasets=False)


def test_digits_builder(digits_dir, tmp_path):
  builder = tfds.builder("digits", data_dir=digits_dir)
  assert builder.info.splits["train"].num_examples == 1437
  assert builder.info.splits["test"].num_examples == 360
  images, labels = _split(digits_dir, "train")
  assert images.shape == (1437, 8, 8, 1) and images.dtype == np.uint8
  assert images.max() == 255 and images.min() == 0
  assert set(labels.tolist()) == set(range(10))
  # The stored data are sklearn's, scaled round(v * 255 / 16).
  expected = digits_builder.load_split()
  for split in ("train", "test"):
    got = _split(digits_dir, split)
    assert _keys(*got) == _keys(*expected[split][:2])
  # A second build holds the same examples in the same order.
  other = str(tmp_path / "again")
  tfds.builder("digits", data_dir=other).download_and_prepare()
  for split in ("train", "test"):
    first, second = _split(digits_dir, split), _split(other, split)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_pipeline_prepares_digits_itself(tmp_path):
  info = data.dataset_info(_config(data_dir=str(tmp_path)))
  spec = data.get_spec("digits")
  assert info == data.DatasetInfo("digits", 10, (8, 8, 1), 1437, 360, spec.mean, spec.std)
  assert tfds.builder("digits", data_dir=str(tmp_path)).is_prepared()


def test_dataset_info_reads_the_training_config(digits_dir):
  path = os.path.join(REPO, "train", "configs", "default.py")
  spec = importlib.util.spec_from_file_location("default_config", path)
  default = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(default)
  config = default.get_config().dataset
  config.data_dir = digits_dir
  config.image_size = 16
  info = data.dataset_info(config)
  assert info.image_shape == (16, 16, 1) and info.num_classes == 10
  batch = next(data.train_batches(config, global_batch_size=8, seed=0))
  assert batch["image"].shape == (8, 16, 16, 1)


def test_train_batches_shape_and_normalisation(digits_dir):
  batch = next(data.train_batches(_config(data_dir=digits_dir),
                                  global_batch_size=32, seed=0))
  assert set(batch) == {"image", "label"}
  assert batch["image"].shape == (32, 8, 8, 1)
  assert batch["image"].dtype == np.float32
  assert batch["label"].shape == (32,) and batch["label"].dtype == np.int32
  pixels = _to_pixels(batch["image"], DIGITS)  # Crop padding adds exact zeros.
  assert pixels.max() == 255


def test_digits_are_never_flipped_by_default(digits_dir):
  originals = _split(digits_dir, "train")
  known = set(_keys(*originals))
  config = _config(data_dir=digits_dir, crop_padding=0)
  batches = _take(data.train_batches(config, global_batch_size=128, seed=0), 12)
  for b in batches:
    pixels = _to_pixels(b["image"], DIGITS)
    assert set(_keys(pixels, b["label"])) <= known
  # Sanity check of the check: with flip on, some images are not originals.
  config.flip = True
  b = next(data.train_batches(config, global_batch_size=128, seed=0))
  assert not set(_keys(_to_pixels(b["image"], DIGITS), b["label"])) <= known


def test_one_epoch_visits_every_example_once(digits_dir):
  config = _config(data_dir=digits_dir, crop_padding=0, shuffle_buffer=1437)
  # 1437 = 3 * 479: three batches of 479 are exactly one epoch.
  batches = _take(data.train_batches(config, global_batch_size=479, seed=3), 3)
  images = np.concatenate([_to_pixels(b["image"], DIGITS) for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  assert _keys(images, labels) == _keys(*_split(digits_dir, "train"))


def test_resume_matches_uninterrupted_run(digits_dir):
  config = _config(data_dir=digits_dir)  # Random crops on.
  # 1437 / 128 = 11.2 batches per epoch: steps 10..13 cross the boundary.
  full = _take(data.train_batches(config, global_batch_size=128, seed=7), 14)
  resumed = _take(data.train_batches(config, global_batch_size=128, seed=7,
                                     start_step=10), 4)
  for a, b in zip(full[10:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  # Resuming epochs ahead (skipped arithmetically) is consistent with a later start.
  late = next(data.train_batches(config, global_batch_size=128, seed=7,
                                 start_step=1000))
  later = _take(data.train_batches(config, global_batch_size=128, seed=7,
                                   start_step=999), 2)[1]
  np.testing.assert_array_equal(late["image"], later["image"])


def _digest(batches):
  h = hashlib.sha256()
  for b in batches:
    h.update(b["image"].tobytes())
    h.update(b["label"].tobytes())
  return h.hexdigest()


def test_resume_in_a_new_process_gives_the_same_batches(digits_dir):
  script = (
      "import ml_collections, hashlib, sys\n"
      "from jaxvision import data\n"
      f"c = ml_collections.ConfigDict(dict(name='digits', data_dir={digits_dir!r},"
      " image_size=0, crop_padding=-1, flip=None, shuffle_buffer=10000))\n"
      "it = data.train_batches(c, global_batch_size=128, seed=5, start_step=11)\n"
      "h = hashlib.sha256()\n"
      "for _ in range(2):\n"
      "  b = next(it); h.update(b['image'].tobytes()); h.update(b['label'].tobytes())\n"
      "print('DIGEST', h.hexdigest())\n")
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True,
                       capture_output=True, text=True, timeout=120).stdout
  child = next(l.split()[1] for l in out.splitlines() if l.startswith("DIGEST"))
  here = _take(data.train_batches(_config(data_dir=digits_dir),
                                  global_batch_size=128, seed=5), 13)[11:]
  assert child == _digest(here)


def test_seeds_change_order_and_augmentation(digits_dir):
  config = _config(data_dir=digits_dir)
  a = next(data.train_batches(config, global_batch_size=128, seed=0))
  b = next(data.train_batches(config, global_batch_size=128, seed=1))
  assert not np.array_equal(a["label"], b["label"])
  # Same order (no shuffling possible with buffer 1), different crops.
  config.shuffle_buffer = 1
  a = next(data.train_batches(config, global_batch_size=128, seed=0))
  b = next(data.train_batches(config, global_batch_size=128, seed=1))
  np.testing.assert_array_equal(a["label"], b["label"])
  assert not np.array_equal(a["image"], b["image"])


def test_eval_covers_every_example_once(digits_dir):
  batches = list(data.eval_batches(_config(data_dir=digits_dir),
                                   global_batch_size=256))
  assert len(batches) == 2  # 360 examples: one full batch, one padded.
  for b in batches:
    assert b["image"].shape == (256, 8, 8, 1) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32 and b["weight"].dtype == np.float32
  weight = np.concatenate([b["weight"] for b in batches])
  assert weight.sum() == 360 and set(weight.tolist()) == {0.0, 1.0}
  assert np.all(weight[:360] == 1)  # Padding only at the end.
  images = np.concatenate([b["image"] for b in batches])[weight == 1]
  labels = np.concatenate([b["label"] for b in batches])[weight == 1]
  assert _keys(_to_pixels(images, DIGITS), labels) == _keys(
      *_split(digits_dir, "test"))


def test_hosts_share_the_data(digits_dir, monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 7)
  config = _config(data_dir=digits_dir)
  seen = []
  for index in range(7):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    batches = list(data.eval_batches(config, global_batch_size=70))
    # 360 = 4 * 52 + 3 * 51: every host yields ceil(52 / 10) batches of 10.
    assert len(batches) == 6 and batches[0]["image"].shape[0] == 10
    weight = np.concatenate([b["weight"] for b in batches])
    images = np.concatenate([b["image"] for b in batches])[weight == 1]
    labels = np.concatenate([b["label"] for b in batches])[weight == 1]
    seen += _keys(_to_pixels(images, DIGITS), labels)
    train = next(data.train_batches(config, global_batch_size=70, seed=0))
    assert train["image"].shape == (10, 8, 8, 1)
  assert sorted(seen) == _keys(*_split(digits_dir, "test"))


@pytest.mark.parametrize("name, image_size, shape, num_classes", [
    ("mnist", 0, (28, 28, 1), 10),
    ("cifar10", 0, (32, 32, 3), 10),
    ("cifar100", 0, (32, 32, 3), 100),
    ("imagenet2012", 32, (32, 32, 3), 1000),
])
def test_mocked_datasets(name, image_size, shape, num_classes, tmp_path):
  config = _config(name=name, data_dir=str(tmp_path), image_size=image_size)
  # USE_CODE: the datasets' features come from TFDS's code, never the network.
  with tfds.testing.mock_data(num_examples=10,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    info = data.dataset_info(config)
    train = _take(data.train_batches(config, global_batch_size=4, seed=0), 3)
    evals = list(data.eval_batches(config, global_batch_size=4))
  assert info.image_shape == shape and info.num_classes == num_classes
  assert info.num_eval == 10
  for b in train + evals:
    assert b["image"].shape == (4, *shape) and b["image"].dtype == np.float32
    assert np.all(np.isfinite(b["image"]))
    assert b["label"].dtype == np.int32
    assert np.all((0 <= b["label"]) & (b["label"] < num_classes))
  assert len(evals) == 3 and sum(b["weight"].sum() for b in evals) == 10


def test_unprepared_dataset_fails_without_network(tmp_path):
  with pytest.raises(AssertionError, match="could not find data"):
    data.train_batches(_config(name="mnist", data_dir=str(tmp_path)),
                       global_batch_size=8, seed=0)


def test_unknown_dataset_name():
  # Every kind's names are offered.
  with pytest.raises(ValueError, match=r"name.*'svhn'.*cifar10.*digits.*shapes_multilabel.*voc/2007"):
    data.dataset_info(_config(name="svhn"))


@pytest.mark.parametrize("name, kind", [
    ("digits", "classification"), ("imagenet2012", "classification"),
    ("shapes/64", "segmentation"), ("voc2012_segmentation", "segmentation"),
    ("shapes_detection/64", "detection"), ("coco/2017", "detection"),
    ("shapes_multilabel/64", "multilabel"), ("voc_multilabel/2007", "multilabel"),
])
def test_every_dataset_kind_goes_through_the_one_stream(name, kind):
  from jaxvision.data import pipeline, stream
  assert pipeline.kind_of(name) == kind
  assert isinstance(pipeline.KINDS[kind], stream.Kind)


def test_config_and_specs_import_without_tensorflow():
  code = ("import sys, jaxvision.data.config as c, jaxvision.data as d; "
          "c.default_dataset_config(); d.get_spec('digits'); d.DatasetInfo; "
          "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')]; "
          "print(bad); sys.exit(1 if bad else 0)")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
  assert r.returncode == 0, r.stdout + r.stderr
  with pytest.raises(AttributeError, match="has no attribute 'nope'"):
    data.nope  # pylint: disable=pointless-statement


def _data_imports(root: str = REPO) -> dict[str, set[str]]:
  """Module of jaxvision.data -> the jaxvision modules it imports (anywhere in its code)."""
  import ast
  import pathlib
  paths = list((pathlib.Path(root) / "jaxvision" / "data").rglob("*.py"))
  name = lambda p: ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
  modules = {name(p) for p in paths}
  graph = {}
  for path in paths:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxvision"):
        # `from package import module` imports the module, `from module import name` the module.
        found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                  else node.module for a in node.names}
      elif isinstance(node, ast.Import):
        found |= {a.name for a in node.names if a.name.startswith("jaxvision")}
    graph[name(path)] = found
  return graph


def test_data_imports_point_down_without_circles():
  graph = _data_imports()
  for module, imported in graph.items():
    higher = [m for m in imported if m.split(".")[1] in ("models", "training", "analysis")]
    assert not higher, f"{module} imports {higher}"
  # No circle among the modules of jaxvision.data (depth-first search for a back edge).
  state = {}

  def visit(m, path):
    state[m] = "open"
    for n in graph.get(m, ()):
      assert state.get(n) != "open", f"import circle: {' -> '.join(path + [n])}"
      if n not in state:
        visit(n, path + [n])
    state[m] = "done"

  for m in graph:
    if m not in state:
      visit(m, [m])


def test_batch_size_must_split_over_processes(digits_dir, monkeypatch):
  config = _config(data_dir=digits_dir)
  monkeypatch.setattr(jax, "process_count", lambda: 3)
  with pytest.raises(ValueError, match=r"global_batch_size.*=3.*128"):
    data.train_batches(config, global_batch_size=128, seed=0)
  with pytest.raises(ValueError, match=r"global_batch_size.*=3.*100"):
    data.eval_batches(config, global_batch_size=100)
  with pytest.raises(ValueError, match="global_batch_size"):
    data.train_batches(config, global_batch_size=0, seed=0)


@pytest.mark.parametrize("name, field, value", [
    ("digits", "image_size", -1),
    ("digits", "crop_padding", -2),
    ("digits", "shuffle_buffer", 0),
    ("imagenet2012", "crop_padding", 4),  # Its random crop is Inception-style.
])
def test_bad_config_values(name, field, value):
  with pytest.raises(ValueError, match=rf"dataset_config.{field}.*{value}"):
    data.dataset_info(_config(name=name, **{field: value}))
