"""Multi-label classification: the sigmoid loss against its formula, per-class AP and mAP against
scikit-learn (random and tie-heavy scores), image-level labels against the rendered objects, the
task's checks and evaluation, and the config training two steps."""

import importlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.metrics import average_precision_score

from jaxvision import data
from jaxvision.data import detection, multilabel
from jaxvision.data.builders.shapes import ShapesConfig, render
from jaxvision.losses.multilabel import multi_hot, sigmoid_cross_entropy
from jaxvision.metrics.multilabel import (average_precision, mean_average_precision, per_class_ap,
                                          top1)
from jaxvision.training.config import default_config
from jaxvision.training.multilabel_task import MultiLabelClassification

TINY = ShapesConfig(name="multilabel_test", image_size=32, num_train=16, num_test=6, max_shapes=4)


def numpy_bce(z, y):
  p = 1 / (1 + np.exp(-z.astype(np.float64)))
  return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_loss_matches_the_formula():
  rng = np.random.default_rng(0)
  z = rng.normal(0, 3, (6, 4)).astype(np.float32)
  y = (rng.uniform(size=(6, 4)) < 0.4).astype(np.float32)
  np.testing.assert_allclose(sigmoid_cross_entropy(z, y), numpy_bce(z, y).mean(), rtol=1e-5)
  w = np.array([1, 0, 1, 1, 0, 2], np.float32)
  expected = (numpy_bce(z, y).mean(1) * w).sum() / w.sum()
  np.testing.assert_allclose(sigmoid_cross_entropy(z, y, weights=w), expected, rtol=1e-5)
  # Stable at large logits: log(1 + e^-50) ~ 2e-22, and 50 for the wrong sign.
  np.testing.assert_allclose(sigmoid_cross_entropy(np.array([[50.0, -50.0]]),
                                                   np.array([[1.0, 1.0]])), 25.0, rtol=1e-6)
  with pytest.raises(ValueError, match="labels: expected the logits' shape"):
    sigmoid_cross_entropy(z, y[:, :3])


def test_multi_hot_numpy_and_jit():
  classes = np.array([[2, 0, 2, 1], [1, 1, 0, 0]])
  valid = np.array([[True, True, True, False], [True, False, False, False]])
  expected = [[1, 0, 1], [0, 1, 0]]
  np.testing.assert_array_equal(multi_hot(classes, valid, 3), expected)
  np.testing.assert_array_equal(jax.jit(multi_hot, static_argnums=2)(classes, valid, 3), expected)


def test_ap_hand_made_with_ties():
  # Ranks: 0.9 (+) | 0.8, 0.8 (+, -) tied | 0.1 (-): P, R = (1, 1/2), (2/3, 1) -> 1/2 + 1/3.
  assert average_precision([1, 1, 0, 0], [0.9, 0.8, 0.8, 0.1]) == pytest.approx(5 / 6)
  assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.8, 0.1]) == pytest.approx(5 / 6)
  assert average_precision([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # one operating point
  assert average_precision([0, 1], [0.6, 0.5]) == pytest.approx(0.5)
  assert average_precision([1, 0], [0.6, 0.5]) == 1.0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_per_class_ap_matches_sklearn(seed, ties):
  rng = np.random.default_rng(seed)
  n, k = int(rng.integers(2, 60)), int(rng.integers(1, 6))
  labels = (rng.uniform(size=(n, k)) < rng.uniform(0.1, 0.9)).astype(int)
  labels[rng.integers(n), :] = 1  # every class has a positive
  scores = rng.normal(size=(n, k)) + labels * rng.uniform(0, 2)
  if ties:  # few distinct values: large groups of tied scores
    scores = np.round(scores * 2) / 2 if seed % 2 else rng.integers(0, 3, (n, k)).astype(float)
  expected = average_precision_score(labels, scores, average=None)
  np.testing.assert_allclose(per_class_ap(labels, scores), np.atleast_1d(expected), rtol=1e-12)
  np.testing.assert_allclose(mean_average_precision(labels, scores),
                             average_precision_score(labels, scores, average="macro"),
                             rtol=1e-12)


def test_class_without_positives_is_left_out():
  labels = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 0, 0]])
  scores = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.7], [0.2, 0.1, 0.3], [0.4, 0.6, 0.2]])
  aps = per_class_ap(labels, scores)
  assert np.isnan(aps[1])  # sklearn: 0 with a warning
  keep = [0, 2]
  np.testing.assert_allclose(aps[keep], average_precision_score(labels[:, keep], scores[:, keep],
                                                                average=None))
  assert mean_average_precision(labels, scores) == pytest.approx(np.mean(aps[keep]))
  assert np.isnan(mean_average_precision(np.zeros((2, 2)), scores[:2, :2]))


def test_metric_errors():
  with pytest.raises(ValueError, match="labels: expected the scores' shape"):
    per_class_ap(np.zeros((3, 2)), np.zeros((3, 3)))
  with pytest.raises(ValueError, match=r"labels: expected 0/1"):
    per_class_ap(np.full((3, 2), 2), np.zeros((3, 2)))
  with pytest.raises(ValueError, match="scores: expected finite"):
    average_precision([1, 0], [np.nan, 0.0])


def test_top1():
  # One label per image: ordinary top-1 (argmax == label).
  rng = np.random.default_rng(1)
  scores, label = rng.normal(size=(50, 4)), rng.integers(0, 4, 50)
  assert top1(np.eye(4)[label], scores) == pytest.approx(np.mean(scores.argmax(1) == label))
  labels = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]])
  assert top1(labels, np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.4], [0.3, 0.3, 0.1]])) == \
      pytest.approx(2 / 3)


# ---- data ----

@pytest.fixture
def tiny(tiny_shapes, monkeypatch):
  """`shapes_detection/64` and `shapes_multilabel/64` read the tiny build."""
  tiny_dir, spec = tiny_shapes(TINY, "shapes_detection/64")
  monkeypatch.setitem(detection.DATASETS, "shapes_detection/64", spec)
  c = ml_collections.ConfigDict(default_config().dataset.to_dict())
  c.name, c.data_dir = "shapes_multilabel/64", tiny_dir
  return c


def rendered_labels(split, count):
  return sorted(tuple(np.isin(np.arange(3), render(TINY, split, i)[3]).astype(int))
                for i in range(count))


def test_eval_labels_agree_with_the_objects(tiny):
  batches = list(data.eval_batches(tiny, global_batch_size=4))
  b = {k: np.concatenate([x[k] for x in batches]) for k in batches[0]}
  assert set(b) == {"image", "labels", "weight"} and b["labels"].shape == (8, 3)
  real = b["labels"][b["weight"] > 0]
  # TFDS stores examples in its own order: compare as sorted lists.
  assert sorted(tuple(r.astype(int)) for r in real) == rendered_labels("test", 6)
  info = data.dataset_info(tiny)
  assert (info.name, info.num_classes, info.num_train, info.num_eval) == \
      ("shapes_multilabel/64", 3, 16, 6)


def test_train_labels_agree_with_the_objects(tiny):
  unaugmented = tiny.copy_and_resolve_references()
  unaugmented.crop_padding, unaugmented.flip = 0, False
  batch = next(data.train_batches(unaugmented, 16, seed=0))
  assert sorted(tuple(r.astype(int)) for r in batch["labels"]) == rendered_labels("train", 16)
  with pytest.raises(ValueError, match="dataset name: unknown multi-label dataset"):
    multilabel.settings(ml_collections.ConfigDict({"name": "nope"}))


# ---- task ----

def test_task_labels_from_boxes_equal_labels():
  task = MultiLabelClassification(3)
  logits = jnp.array([[2.0, -1.0, -0.5], [-3.0, 1.0, 0.0]])
  classes, valid = np.array([[0, 2], [1, 0]]), np.array([[True, True], [True, False]])
  with_boxes = task.loss(logits, {"classes": classes, "valid": valid})[0]
  with_labels = task.loss(logits, {"labels": np.array([[1, 0, 1], [0, 1, 0]], np.float32)})[0]
  assert float(with_boxes) == pytest.approx(float(with_labels))
  acc = task.accumulator()
  out = task.eval_outputs(logits, {"labels": jnp.array([[1, 0, 1], [0, 1, 0]], jnp.float32),
                                   "weight": jnp.array([1.0, 1.0])})
  acc.add(out)
  acc.add({**out, "weight": np.zeros(2), "scores": np.ones((2, 3))})  # padding: ignored
  r = acc.result()
  # Class 2 ranks the negative (0.5) above the positive (0.38): AP 1/2.
  assert r["ap_0"] == r["ap_1"] == 1.0 and r["ap_2"] == pytest.approx(0.5)
  assert r["map"] == pytest.approx(5 / 6) and r["top1"] == 1.0
  assert r["accuracy"] == pytest.approx(5 / 6)
  assert r["loss"] == pytest.approx(float(with_labels))


def test_task_checks_the_batch():
  task = MultiLabelClassification(3)
  image = np.zeros((2, 8, 8, 3), np.float32)
  task.check_batch({"image": image, "labels": np.eye(3)[:2]}, image_shape=(8, 8, 3), num_classes=3)
  with pytest.raises(ValueError, match=r"batch\['labels'\]: expected multi-hot \[B, K\]"):
    task.check_batch({"image": image, "labels": np.eye(4)[:2]}, image_shape=(8, 8, 3),
                     num_classes=3)
  with pytest.raises(ValueError, match=r"batch\['labels'\]: expected 0/1"):
    task.check_batch({"image": image, "labels": np.full((2, 3), 0.5)}, image_shape=(8, 8, 3),
                     num_classes=3)
  with pytest.raises(ValueError, match="batch: missing"):
    task.check_batch({"image": image}, image_shape=(8, 8, 3), num_classes=3)


@pytest.mark.slow  # compiles a train and an eval step: 20-65 s on the shared 2-core CPU
def test_config_trains_two_steps(tiny, tmp_path):
  from jaxvision.training.fit import fit
  c = importlib.import_module("jaxvision.configs.multilabel_shapes").get_config()
  c.dataset.data_dir = tiny.data_dir
  c.model.options = dict(c.model.options, widths=(8, 8, 8, 8), stem_width=8)
  c.batch_size, c.eval_batch_size, c.num_train_steps, c.plot = 4, 4, 2, False
  summary = fit(c, tmp_path / "run", progress=False)
  assert summary["steps"] == 2 and 0.0 <= summary["eval"]["map"] <= 1.0
  assert 0.0 <= summary["eval"]["top1"] <= 1.0
  assert (tmp_path / "run" / "checkpoints" / "2").exists()


@pytest.mark.usefixtures("ordered_mock_boxes")
def test_mocked_voc_multilabel(tmp_path):
  """voc_multilabel/2007 through the input pipeline on TFDS mock data: multi-hot of its objects."""
  c = ml_collections.ConfigDict(default_config().dataset.to_dict())
  c.name, c.data_dir, c.image_size = "voc_multilabel/2007", str(tmp_path), 64
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    info = data.dataset_info(c)
    train = next(data.train_batches(c, 4, seed=0))
    evals = list(data.eval_batches(c, 4))
    source = ml_collections.ConfigDict(c.to_dict())
    source.name = "voc/2007"
    objects = list(data.eval_batches(source, 4))
  assert info.name == "voc_multilabel/2007" and info.num_classes == 20
  assert info.image_shape == (64, 64, 3) and info.num_eval == 6
  assert set(train) == {"image", "labels"} and train["labels"].shape == (4, 20)
  assert np.isin(train["labels"], (0, 1)).all()
  for b, o in zip(evals, objects):
    np.testing.assert_array_equal(b["labels"], multi_hot(o["classes"], o["valid"], 20))
    np.testing.assert_array_equal(b["weight"], o["weight"])
  assert sum(float(b["weight"].sum()) for b in evals) == 6
