"""The `shapes` TFDS builder: features, masks consistent with boxes and classes, reproducibility."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import jaxvision.data  # noqa: F401  (registers the builders, keeps TFDS offline)
from jaxvision.data.builders import shapes

TINY = shapes.ShapesConfig(name="shapes_test", image_size=48, num_train=30, num_test=10)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds_shapes"))
  tfds.builder("shapes", config=TINY, data_dir=data_dir).download_and_prepare()
  return data_dir


def read(data_dir, split):
  builder = tfds.builder(f"shapes/{TINY.name}", data_dir=data_dir)
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_configs_and_features():
  builder = tfds.builder("shapes")
  assert builder.builder_config.name == "128"  # the default
  assert builder.info.features["image"].shape == (128, 128, 3)
  assert builder.info.features["mask"].shape == (128, 128, 1)
  assert builder.info.features["objects"]["label"].names == ["circle", "square", "triangle"]
  small = tfds.builder("shapes/64")
  assert small.info.features["image"].shape == (64, 64, 3)


def test_build_has_the_splits_and_stores_the_rendered_examples(tiny_dir):
  builder = tfds.builder(f"shapes/{TINY.name}", data_dir=tiny_dir)
  assert builder.info.splits["train"].num_examples == 30
  assert builder.info.splits["test"].num_examples == 10
  # Stored losslessly (PNG): the dataset holds exactly what `render` draws, in some order.
  stored = {ex["image"].tobytes(): ex for ex in read(tiny_dir, "test")}
  for index in range(10):
    image, mask, boxes, labels = shapes.render(TINY, "test", index)
    ex = stored[image.tobytes()]
    np.testing.assert_array_equal(ex["mask"], mask)
    np.testing.assert_allclose(ex["objects"]["bbox"], boxes, atol=1e-6)
    np.testing.assert_array_equal(ex["objects"]["label"], labels)


def test_masks_boxes_and_classes_agree():
  size = TINY.image_size
  kinds = set()
  for index in range(40):
    image, mask, boxes, labels = shapes.render(TINY, "train", index)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert mask.shape == (size, size, 1) and set(np.unique(mask)) <= {0, 1, 2, 3}
    assert TINY.min_shapes <= len(labels) <= TINY.max_shapes
    assert np.all((0 <= boxes) & (boxes <= 1))
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    covered = np.zeros((size, size), bool)
    for box, label in zip(boxes, labels):
      y0, x0, y1, x1 = np.round(box * size).astype(int)
      inside = mask[y0:y1, x0:x1, 0]
      # The box is the tight box of its shape's pixels: every edge row/column touches the shape.
      shape = inside == label + 1
      assert shape[0].any() and shape[-1].any() and shape[:, 0].any() and shape[:, -1].any()
      assert set(np.unique(inside)) <= {0, label + 1}  # shapes do not overlap
      covered[y0:y1, x0:x1] = True
      kinds.add(int(label))
    assert not mask[~covered].any()  # no labelled pixel outside the boxes
  assert kinds == {0, 1, 2}


def test_rendering_is_a_pure_function_of_seed_split_and_index():
  a = shapes.render(TINY, "train", 3)
  b = shapes.render(TINY, "train", 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], shapes.render(TINY, "test", 3)[0])
  assert not np.array_equal(a[0], shapes.render(TINY, "train", 4)[0])
  reseeded = shapes.ShapesConfig(name="other", image_size=48, seed=1)
  assert not np.array_equal(a[0], shapes.render(reseeded, "train", 3)[0])
