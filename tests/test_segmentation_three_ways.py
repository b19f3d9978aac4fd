"""Segmentation three ways: the per-pixel crops, the patch sampler, pixel-by-pixel segmentation
and the full-resolution FCN's receptive field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.analysis import segmentation_three_ways as s3
from jaxvision.models import create_model


def test_pixel_patches_are_centred_on_each_pixel_row_major():
  rs = np.random.RandomState(0)
  image = rs.randn(5, 7, 2).astype(np.float32)
  crops = s3.pixel_patches(image, 3)
  assert crops.shape == (35, 3, 3, 2)
  np.testing.assert_array_equal(crops[:, 1, 1], image.reshape(35, 2))
  np.testing.assert_array_equal(crops[0, 0], 0.0)  # above the image: padding
  np.testing.assert_array_equal(crops[8, 0, 0], image[0, 0])  # pixel (1, 1)'s top-left


def test_sample_patches_labels_are_the_centre_pixels_half_on_objects():
  rs = np.random.RandomState(1)
  images = rs.randn(3, 9, 9, 1).astype(np.float32)
  masks = np.zeros((3, 9, 9), np.int32)
  masks[:, 2:4, 2:4] = 2
  masks[0, 0, :] = 255
  crops, labels = s3.sample_patches(images, masks, 40, 5, np.random.default_rng(0))
  assert crops.shape == (40, 5, 5, 1) and (labels == 2).sum() == 20 and (labels == 0).sum() == 20
  centres = crops[:, 2, 2, 0]
  for c, label in zip(centres, labels):  # each centre value sits in the mask at that label
    n, i, j = np.argwhere(images[..., 0] == c)[0]
    assert masks[n, i, j] == label


def test_segment_by_patches_puts_each_label_at_its_pixel():
  rs = np.random.RandomState(2)
  image = rs.randn(6, 4, 3).astype(np.float32)
  # A "classifier" whose logits are the centre pixel itself: the labels are its argmax.
  classify = lambda x: x[:, 2, 2, :]  # noqa: E731
  labels = s3.segment_by_patches(classify, image, 5, chunk=7)
  np.testing.assert_array_equal(labels, np.argmax(image, -1))


def test_scores_match_a_hand_count():
  masks = np.array([[[0, 1], [1, 255]]], np.int32)
  predictions = np.array([[[0, 1], [0, 3]]], np.int32)
  out = s3.scores(masks, predictions)
  assert out["pixel_accuracy"] == pytest.approx(2 / 3)
  # IoU: class 0 1/2, class 1 1/2; classes 2 and 3 never appear in the masks.
  assert out["miou"] == pytest.approx(0.5)


def test_full_resolution_fcn_keeps_the_resolution_and_its_receptive_field():
  model = create_model("full_resolution_fcn", num_classes=3, width=4, depth=2)
  x = jnp.zeros((1, 12, 12, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  params = sum(v.size for v in jax.tree.leaves(variables["params"]))
  # two 3x3 convs without bias (3->4, 4->4), two BatchNorms (scale, bias), 1x1 classifier.
  assert params == 3 * 3 * 3 * 4 + 3 * 3 * 4 * 4 + 2 * 2 * 4 + 4 * 3 + 3
  base = model.apply(variables, x, train=False)
  assert base.shape == (1, 12, 12, 3)
  moved = model.apply(variables, x.at[0, 6, 6, 0].set(5.0), train=False)
  changed = np.argwhere(np.abs(np.asarray(moved - base)).max(-1)[0] > 0)
  # A receptive field of 2 * depth + 1 = 5 pixels: nothing further than 2 pixels moves.
  assert changed.min() >= 4 and changed.max() <= 8 and len(changed) > 1


def test_full_resolution_fcn_refuses_zero_depth():
  model = create_model("full_resolution_fcn", num_classes=3, depth=0)
  with pytest.raises(ValueError, match="depth, width"):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)


def test_an_unknown_way_is_named_before_any_work(tmp_path):
  with pytest.raises(ValueError, match=r"ways: expected .*\['fcn'\]"):
    s3.run(str(tmp_path), ways=("sliding", "fcn"))
