"""Detection input pipeline: padded boxes, augmentation that moves boxes with the image,
determinism and resumption, too many boxes, and the VOC / COCO configs on mocked data."""

import dataclasses
import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxvision import data
from jaxvision.data import detection
from jaxvision.data.builders.shapes import ShapesConfig, render
from jaxvision.data.config import default_dataset_config

TINY = ShapesConfig(name="detection_test", image_size=32, num_train=24, num_test=6, max_shapes=4)


@pytest.fixture
def tiny(tiny_shapes, monkeypatch):
  """Registers detection datasets over the tiny shapes build; returns a config factory."""
  tiny_dir, spec = tiny_shapes(TINY, "tiny")
  monkeypatch.setitem(detection.DATASETS, "tiny", spec)
  monkeypatch.setitem(detection.DATASETS, "tiny_one_box", dataclasses.replace(
      spec, name="tiny_one_box", max_boxes=1))

  def config(**kw):
    c = default_dataset_config()
    c.name, c.data_dir = "tiny", tiny_dir
    c.update(kw)
    return c

  return config


def source(split, count):
  return [render(TINY, split, i) for i in range(count)]


def image_key(boxes, classes):
  return tuple(sorted((tuple(np.round(box, 5)), int(c)) for box, c in zip(boxes, classes)))


def test_eval_batches_hold_every_box_once_padded(tiny):
  batches = list(data.eval_batches(tiny(), global_batch_size=4))
  assert len(batches) == 2
  b = {k: np.concatenate([x[k] for x in batches]) for k in batches[0]}
  assert b["boxes"].shape == (8, 8, 4) and b["image"].shape == (8, 32, 32, 3)
  np.testing.assert_array_equal(b["weight"], [1] * 6 + [0] * 2)
  seen = []
  for i in range(6):
    n = int(b["valid"][i].sum())
    assert b["valid"][i].tolist() == [True] * n + [False] * (8 - n)  # boxes first, then padding
    assert not b["boxes"][i, n:].any()
    seen.append(image_key(b["boxes"][i, :n], b["classes"][i, :n]))
    assert not b["difficult"][i].any() and b["image_size"][i].tolist() == [32, 32]
  assert not b["valid"][6:].any()
  # TFDS stores examples in its own order: compare the images' boxes and classes as a set.
  assert sorted(seen) == sorted(image_key(boxes, labels) for _, _, boxes, labels in
                                source("test", 6))


def test_training_without_augmentation_keeps_the_boxes(tiny):
  batch = next(data.train_batches(tiny(crop_padding=0, flip=False), 24, seed=0))
  assert set(batch) == {"image", "boxes", "classes", "valid"}
  seen = sorted(tuple(np.round(box, 5)) for box in batch["boxes"][batch["valid"]])
  expected = sorted(tuple(np.round(box, 5)) for _, _, b, _ in source("train", 24) for box in b)
  assert seen == expected


def test_augmented_boxes_are_valid_and_runs_resume(tiny):
  config = tiny()
  run = data.train_batches(config, 8, seed=3)
  batches = [next(run) for _ in range(5)]
  for b in batches:
    boxes = b["boxes"][b["valid"]]
    assert boxes.min() >= 0 and boxes.max() <= 1
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert not b["boxes"][~b["valid"]].any()
  resumed = next(data.train_batches(config, 8, seed=3, start_step=4))
  for k in resumed:
    np.testing.assert_array_equal(resumed[k], batches[4][k])
  other = next(data.train_batches(config, 8, seed=4))
  assert not np.array_equal(other["image"], batches[0]["image"])


def painted(size, box):
  """A float image (0 outside, 255 inside the normalised box) and the box [1, 4]."""
  image = np.zeros((size, size, 3), np.float32)
  y0, x0, y1, x1 = (np.asarray(box) * size).astype(int)
  image[y0:y1, x0:x1] = 255.0
  return tf.constant(image), tf.constant([box], tf.float32)


def extent(image):
  """Normalised tight box of the bright pixels."""
  rows, cols = np.nonzero(np.asarray(image)[..., 0] > 127)
  size = image.shape[0]
  return np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]) / size


@pytest.mark.parametrize("seed", range(6))
def test_boxes_move_with_the_image(seed):
  image, boxes = painted(64, [0.25, 0.375, 0.625, 0.75])
  key = tf.constant([seed, 7], tf.int64)
  masks = tf.cast(tf.reduce_any(image > 0, -1, keepdims=True), tf.uint8)  # [H, W, 1]
  out, moved, masks = detection._scale_and_place(image, boxes, 64, (0.6, 1.4), tf.zeros(3), key,
                                                 masks)
  out, moved, masks = detection._flip(out, moved, tf.constant([seed, 8], tf.int64), masks)
  np.testing.assert_allclose(extent(out), moved.numpy()[0], atol=1.5 / 64)
  np.testing.assert_allclose(extent(255.0 * tf.cast(masks, tf.float32)), moved.numpy()[0],
                             atol=1.5 / 64)


def test_boxes_whose_centre_leaves_the_image_are_dropped_the_rest_clipped():
  boxes = tf.constant([[-0.3, 0.1, 0.2, 0.3], [-0.1, 0.1, 0.3, 0.3], [0.5, 0.9, 0.7, 1.3]])
  masks = tf.constant([[[0, 1, 2]]], tf.uint8)  # mask i holds the value i
  kept, classes, masks = detection._keep_inside(boxes, tf.constant([0, 1, 2]), masks)
  np.testing.assert_allclose(kept.numpy(), [[0.0, 0.1, 0.3, 0.3]])
  assert classes.numpy().tolist() == [1] and masks.numpy().ravel().tolist() == [1]


def test_more_boxes_than_max_boxes_is_an_error_unless_dropped(tiny, caplog):
  counts = [len(labels) for _, _, _, labels in source("test", 6)]
  assert max(counts) > 1
  with pytest.raises(tf.errors.InvalidArgumentError, match="more boxes than max_boxes=1"):
    list(data.eval_batches(tiny(name="tiny_one_box"), global_batch_size=6))
  c = tiny(name="tiny_one_box")
  c.drop_extra_boxes = True  # not a default config key yet: read when present
  with caplog.at_level(logging.WARNING):
    (b,) = list(data.eval_batches(c, global_batch_size=6))
  assert b["boxes"].shape == (6, 1, 4) and b["valid"].all()
  assert f"dropped {sum(counts) - 6} boxes beyond max_boxes=1" in caplog.text


def test_training_box_sizes_for_kmeans(tiny):
  wh = detection.training_box_sizes(tiny())
  boxes = np.concatenate([b for _, _, b, _ in source("train", 24)])
  np.testing.assert_allclose(np.sort(wh[:, 0]), np.sort(boxes[:, 3] - boxes[:, 1]), atol=1e-6)


def test_bad_dataset_config_values(tiny):
  with pytest.raises(ValueError, match="crop_padding: tiny uses a random rescale .* got 4"):
    data.dataset_info(tiny(crop_padding=4))
  with pytest.raises(ValueError, match="unknown detection dataset 'voc/2099'"):
    detection.get_spec("voc/2099")


@pytest.mark.usefixtures("ordered_mock_boxes")
@pytest.mark.parametrize("name,num_classes,image_size,max_boxes", [
    ("voc/2007", 20, 448, 64), ("voc/2007+2012", 20, 448, 64), ("coco/2017", 80, 416, 100)])
def test_mocked_voc_and_coco(name, num_classes, image_size, max_boxes, tmp_path):
  c = default_dataset_config()
  c.name, c.data_dir, c.image_size = name, str(tmp_path), 64
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    info = data.dataset_info(c)
    train = next(data.train_batches(c, 4, seed=0))
    evals = list(data.eval_batches(c, 4))
  assert info.num_classes == num_classes and info.image_shape == (64, 64, 3)
  assert info.num_eval == 6 and info.num_train == 6 * (2 if "+" in name else 1)
  assert detection.get_spec(name).image_size == image_size
  for b in [train] + evals:
    assert b["image"].shape == (4, 64, 64, 3) and np.isfinite(b["image"]).all()
    assert b["boxes"].shape == (4, max_boxes, 4) and b["classes"].dtype == np.int32
    boxes, classes = b["boxes"][b["valid"]], b["classes"][b["valid"]]
    assert ((0 <= boxes) & (boxes <= 1)).all() and ((0 <= classes) & (classes < num_classes)).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
  assert sum(float(b["weight"].sum()) for b in evals) == 6
  assert all(b["difficult"].shape == (4, max_boxes) for b in evals)


@pytest.mark.slow  # three compilations (train, eval, overlay predictions): 30-90 s
def test_fit_trains_and_evaluates_a_yolo_end_to_end(tiny, tmp_path):
  import json

  from jaxvision.training.config import default_config
  from jaxvision.training.fit import fit

  c = default_config()
  c.task = "detection"
  c.model.name = "yolov2"
  c.model.options.backbone = "resnet"
  c.model.options.backbone_options = dict(stage_sizes=(1, 1), widths=(4, 8), stem="imagenet",
                                          stem_width=4)
  c.model.options.head_width = 8
  c.model.options.anchors = ((0.2, 0.2), (0.35, 0.35))
  c.dataset.update(tiny().to_dict())
  c.batch_size, c.eval_batch_size, c.num_train_steps = 8, 4, 3
  c.optimizer.name, c.optimizer.learning_rate = "adamw", 1e-3
  c.best_metric, c.plot = "map_voc07", False
  summary = fit(c, tmp_path, progress=False)
  assert summary["steps"] == 3 and 0.0 <= summary["eval_accuracy"] <= 1.0
  evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  last = [m for m in evals if m["split"] == "eval"][-1]
  for key in ("map_voc07", "map_voc12", "coco_AP", "coco_AR100", "loss"):
    assert key in last
  # Overlays of the first eval batch (4 images).
  assert sorted(p.name for p in (tmp_path / "detections").iterdir()) == [f"{i:03d}.png"
                                                                          for i in range(4)]


@pytest.mark.slow  # compiles a train and an eval step per config
@pytest.mark.usefixtures("ordered_mock_boxes")
@pytest.mark.parametrize("name", ["yolov1_voc", "yolov2_voc", "yolov2_coco"])
def test_voc_and_coco_configs_train_on_mock_data(name, tmp_path):
  import importlib

  from jaxvision.training.fit import fit

  c = importlib.import_module(f"jaxvision.configs.{name}").get_config()
  # The config's own dataset and task; a small backbone and input for compile time.
  c.model.options.backbone = "resnet"
  c.model.options.backbone_options = dict(stage_sizes=(1,), widths=(4,), stem="imagenet",
                                          stem_width=4)
  c.model.options.grid_size, c.model.options.head_width = 0, 8
  c.dataset.data_dir, c.dataset.image_size = str(tmp_path / "data"), 32
  c.batch_size = c.eval_batch_size = 4
  c.num_train_steps, c.plot = 2, False
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = fit(c, tmp_path / "run", progress=False)
  assert summary["steps"] == 2 and summary["dataset"] == c.dataset.name
