"""Segmentation: FCN / U-Net / SegNet shapes and parameters, `fully_convolutional`, the loss and
metrics (against sklearn), the task's batch checks, and the input pipeline (image/mask
alignment under augmentation, determinism and resumption, eval padding, mocked real datasets)."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from jaxvision import data
from jaxvision.data import datasets as datasets_lib
from jaxvision.data import segmentation as seg_data
from jaxvision.data.builders.shapes import ShapesConfig
from jaxvision.losses.segmentation import pixel_cross_entropy
from jaxvision.metrics.segmentation import confusion_matrix, segmentation_scores
from jaxvision.models import create_model, fully_convolutional
from jaxvision.nn.upsample import bilinear_kernel
from jaxvision.training.segmentation_task import Segmentation, check_segmentation_batch

# Real initialisations use the "rbg" PRNG: XLA:CPU compiles threefry-based inits of even tiny
# networks 4-5x slower (tens of seconds), and the tests only need some initial values.
KEY = jax.random.key(0, impl="rbg")

TINY_RESNET = dict(backbone="resnet", backbone_options=dict(
    stage_sizes=(1, 1, 1, 1), widths=(4, 8, 16, 32), stem_width=4, scan=False))


def num_params(variables):
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


def init_shapes(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


# ----------------------------------------------------------------------------------- models


@pytest.mark.parametrize("variant", [32, 16, 8])
def test_fcn_heads_and_output_resolution(variant):
  k = 3
  model = create_model(f"fcn{variant}s", num_classes=k, **TINY_RESNET)
  v = init_shapes(model, (2, 64, 64, 3))
  backbone = create_model("resnet", num_classes=k, **TINY_RESNET["backbone_options"])
  features = jax.eval_shape(lambda: backbone.init(jax.random.key(0), jnp.zeros((2, 64, 64, 3)),
                                                  train=False, features=True))
  # Head parameters by hand: 1x1 score layers (C * K + K) and bias-free 4x4 K->K upsamplings.
  head = {32: 32 * k + k,
          16: 32 * k + k + 16 * k * k + 16 * k + k,
          8: 32 * k + k + 2 * 16 * k * k + 16 * k + k + 8 * k + k}[variant]
  assert num_params(v) - num_params(features) == head
  names = {32: {"score_fr"}, 16: {"score_fr", "upscore2", "score_pool4"},
           8: {"score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3"}}[variant]
  assert set(v["params"]) == names | {"backbone"}
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 64, 96, 3)), train=False), v)
  assert out.shape == (2, 64, 96, k) and out.dtype == jnp.float32


def test_fcn8s_init_bilinear_upsamplings_and_zero_skips():
  model = create_model("fcn8s", num_classes=3, **TINY_RESNET)
  v = jax.jit(lambda r: model.init(r, jnp.zeros((1, 32, 32, 3)), train=False))(KEY)
  for name in ("upscore2", "upscore_pool4"):
    np.testing.assert_array_equal(v["params"][name]["kernel"], bilinear_kernel(4, 3, 3))
  for name in ("score_pool4", "score_pool3"):
    assert not np.any(v["params"][name]["kernel"])
  learned = create_model("fcn8s", num_classes=3, learn_final_upsample=True, **TINY_RESNET)
  lv = init_shapes(learned, (1, 64, 64, 3))
  assert lv["params"]["upscore8"]["kernel"].shape == (16, 16, 3, 3)  # k = 2 * 8, stride 8, pad 4


def test_unet_parameters_by_hand():
  model = create_model("unet", num_classes=3, widths=(4, 8))
  v = init_shapes(model, (1, 16, 16, 3))
  # stem 3x3 3->4 + BN; down0: one 4->4 block (two 3x3 convs + 2 BN); down1: 4->8 transition
  # (3x3 4->8, 3x3 8->8, 1x1 projection, 3 BN); upconv 2x2 8->4 + bias; up0: 8->4 transition
  # on the concatenation; classifier 1x1 4->3 + bias.
  expected = (27 * 4 + 8) + 2 * (36 * 4 + 8) + (36 * 8 + 72 * 8 + 4 * 8 + 3 * 16) + (32 * 4 + 4) \
      + (72 * 4 + 36 * 4 + 8 * 4 + 3 * 8) + (4 * 3 + 3)
  assert num_params(v) == expected
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 24, 16, 3)), train=False), v)
  assert out.shape == (2, 24, 16, 3)


def test_segnet_parameters_by_hand_and_unpooling_pairs():
  model = create_model("segnet", num_classes=3, widths=(4, 8), convs_per_level=1)
  v = init_shapes(model, (1, 16, 16, 3))
  # enc0 3->4, enc1 4->8, dec1 8->4, dec0 4->4 (3x3, no bias, + BN), classifier 4->3 + bias.
  assert num_params(v) == (27 * 4 + 8) + (36 * 8 + 16) + (72 * 4 + 8) + (36 * 4 + 8) + 15
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(KEY, x[:1])
  logits = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  assert logits.shape == (2, 16, 16, 3) and np.all(np.isfinite(logits))


@pytest.mark.parametrize("name,options,shape,match", [
    ("fcn8s", TINY_RESNET, (1, 48, 64, 3), r"FCN-8s restores .* divisible by 32; got shape \(1, 48, 64, 3\)"),
    ("unet", dict(widths=(4, 8, 16)), (1, 18, 16, 3), r"U-Net with 3 levels .* divisible by 4"),
    ("segnet", dict(widths=(4, 8)), (1, 16, 10, 3), r"SegNet with 2 pooling layers .* divisible by 4"),
])
def test_sizes_a_model_cannot_restore_fail_before_compute(name, options, shape, match):
  model = create_model(name, num_classes=3, **options)
  with pytest.raises(ValueError, match=match):
    init_shapes(model, shape)


def test_models_accept_axis_name_and_dtype():
  for name, options in (("fcn8s", TINY_RESNET), ("unet", dict(widths=(4, 8))),
                        ("segnet", dict(widths=(4,)))):
    model = create_model(name, num_classes=3, axis_name=None, dtype=jnp.bfloat16, **options)
    v = init_shapes(model, (1, 32, 32, 3))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v["params"]))
    out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 32, 32, 3)), train=False), v)
    assert out.dtype == jnp.float32


# ----------------------------------------------------------------------- fully convolutional


@pytest.fixture(scope="module")
def classifier():
  model = create_model("resnet", num_classes=5, stage_sizes=(1, 1), widths=(4, 8), stem="cifar",
                       stem_width=4, scan=False)
  v = jax.jit(lambda r: model.init(r, jnp.zeros((1, 16, 16, 3)), train=False))(KEY)
  # Non-trivial BatchNorm statistics, so eval-mode normalisation matters.
  v = jax.tree.map(lambda a: a + 0.1 * jnp.cos(jnp.arange(a.size).reshape(a.shape)), v)
  return model, v


def test_fully_convolutional_on_the_training_size_gives_the_logits(classifier):
  model, v = classifier
  x = jax.random.normal(jax.random.key(1), (3, 16, 16, 3))
  logits = jax.jit(functools.partial(model.apply, train=False))(v, x)
  fcn, fv = fully_convolutional(model, v, (16, 16, 3))
  assert fv["params"]["head"]["kernel"].shape == (8, 8, 8, 5)  # 8x8 map, 8 channels, 5 classes
  apply = jax.jit(functools.partial(fcn.apply, train=False))
  scores = apply(fv, x)
  assert scores.shape == (3, 1, 1, 5)
  np.testing.assert_allclose(scores[:, 0, 0], logits, rtol=1e-5, atol=1e-5)
  # On a larger image: a map of scores, one per 8x8 window of the 16x24 feature map.
  big = jax.random.normal(jax.random.key(2), (2, 32, 48, 3))
  assert apply(fv, big).shape == (2, 9, 17, 5)
  # The 1x1 form scores every cell; their mean is the classifier's output, at any size.
  dense, dv = fully_convolutional(model, v)
  cells = jax.jit(functools.partial(dense.apply, train=False))(dv, x)
  assert cells.shape == (3, 8, 8, 5)
  np.testing.assert_allclose(cells.mean((1, 2)), logits, rtol=1e-5, atol=1e-5)


def test_fully_convolutional_needs_a_pooled_dense_head():
  model = create_model("unet", num_classes=3, widths=(4, 8))
  v = jax.eval_shape(lambda r: model.init(r, jnp.zeros((1, 16, 16, 3)), train=False), KEY)
  with pytest.raises(ValueError, match=r"model: expected a classifier .* named 'fc'.*UNet"):
    fully_convolutional(model, v)


# ---------------------------------------------------------------------- loss and metrics


def test_pixel_cross_entropy_ignores_255():
  logits = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
  mask = jnp.array(np.random.RandomState(0).randint(0, 4, (2, 3, 3)))
  mask = mask.at[0, 0, :].set(255)
  logp = jax.nn.log_softmax(logits)
  valid = np.asarray(mask) != 255
  expected = -np.mean(np.take_along_axis(np.asarray(logp), np.where(valid, mask, 0)[..., None],
                                         -1)[..., 0][valid])
  np.testing.assert_allclose(pixel_cross_entropy(logits, mask), expected, rtol=1e-6)
  assert float(pixel_cross_entropy(logits, jnp.full((2, 3, 3), 255))) == 0.0  # no NaN


def sklearn_scores(truth, pred, k):
  keep = truth != 255
  cm = sk_confusion_matrix(truth[keep], pred[keep], labels=list(range(k)))
  tp = np.diag(cm)
  union = cm.sum(0) + cm.sum(1) - tp
  iou = tp / np.where(union > 0, union, 1)
  return cm, tp.sum() / cm.sum(), iou, iou[union > 0].mean()


def test_confusion_matrix_iou_and_miou_match_sklearn():
  rs = np.random.RandomState(0)
  k = 5
  truth = rs.randint(0, k, (6, 7, 9))
  truth[rs.rand(*truth.shape) < 0.2] = 255
  pred = np.where(rs.rand(*truth.shape) < 0.6, np.where(truth == 255, 0, truth),
                  rs.randint(0, k, truth.shape))
  cm_fn = jax.jit(confusion_matrix, static_argnums=2)
  # Accumulated over three batches, as the eval loop does.
  cm = sum(np.asarray(cm_fn(truth[i:i + 2], pred[i:i + 2], k)) for i in range(0, 6, 2))
  ref_cm, ref_acc, ref_iou, ref_miou = sklearn_scores(truth, pred, k)
  np.testing.assert_array_equal(cm, ref_cm)
  scores = segmentation_scores(cm)
  np.testing.assert_allclose(scores["pixel_accuracy"], ref_acc, rtol=1e-12)
  np.testing.assert_allclose(scores["iou"], ref_iou, rtol=1e-12)
  np.testing.assert_allclose(scores["miou"], ref_miou, rtol=1e-12)
  # Rows of weight 0 are left out.
  weighted = cm_fn(truth, pred, k, jnp.array([1, 1, 0, 1, 0, 1], jnp.float32))
  rows = [0, 1, 3, 5]
  np.testing.assert_array_equal(weighted, sklearn_scores(truth[rows], pred[rows], k)[0])


def test_a_class_absent_from_truth_and_prediction_is_left_out_of_the_mean():
  scores = segmentation_scores(np.array([[5, 1, 0], [2, 4, 0], [0, 0, 0]]))
  assert np.isnan(scores["iou"][2])
  np.testing.assert_allclose(scores["miou"], (5 / 8 + 4 / 7) / 2)


def test_task_eval_accumulates_over_batches_and_skips_padding():
  task = Segmentation()
  rs = np.random.RandomState(1)
  k = 3
  logits = rs.randn(4, 5, 5, k).astype(np.float32)
  mask = rs.randint(0, k, (4, 5, 5)).astype(np.int32)
  mask[0, :2] = 255
  weight = np.array([1, 1, 1, 0], np.float32)
  step = jax.jit(task.eval_outputs)
  acc = task.accumulator()
  acc.add(step(logits[:2], {"image": None, "mask": mask[:2], "weight": weight[:2]}))
  acc.add(step(logits[2:], {"image": None, "mask": mask[2:], "weight": weight[2:]}))
  result = acc.result()
  _, ref_acc, ref_iou, ref_miou = sklearn_scores(mask[:3], logits[:3].argmax(-1), k)
  assert result["accuracy"] == pytest.approx(ref_acc) and result["miou"] == pytest.approx(ref_miou)
  assert [result[f"iou_{i}"] for i in range(k)] == pytest.approx(list(ref_iou))
  assert result["loss"] == pytest.approx(float(pixel_cross_entropy(logits[:3], mask[:3])), rel=1e-5)


GOOD = {"image": np.zeros((2, 4, 4, 3), np.float32),
        "mask": np.array([[[0, 1, 2, 255]] * 4] * 2, np.int32)}


@pytest.mark.parametrize("change,err,match", [
    ({"mask": np.zeros((2, 4, 5), np.int32)}, ValueError,
     r"batch\['mask'\]: expected the image's \[B, H, W\] = \(2, 4, 4\), got shape \(2, 4, 5\)"),
    ({"mask": np.full((2, 4, 4), 3, np.int32)}, ValueError,
     r"batch\['mask'\]: expected labels in \[0, 3\) or 255 \(ignore\), got \[3\]"),
    ({"mask": np.full((2, 4, 4), -1, np.int32)}, ValueError, r"got \[-1\]"),
    ({"mask": np.zeros((2, 4, 4), np.float32)}, TypeError, "integer class ids, got dtype float32"),
    ({"image": np.zeros((2, 4, 4, 1), np.float32)}, ValueError, r"expected 3 channels"),
    ({"mask": None}, ValueError, r"missing \['mask'\]"),
])
def test_bad_segmentation_batches_are_named(change, err, match):
  check_segmentation_batch(GOOD, image_shape=(4, 4, 3), num_classes=3)
  batch = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
  with pytest.raises(err, match=match):
    check_segmentation_batch(batch, image_shape=(4, 4, 3), num_classes=3)


# -------------------------------------------------------------------------------- pipeline


def synthetic_example(size=32):
  """An asymmetric mask and an image that is the mask (value * 60 in every channel)."""
  mask = np.zeros((size, size), np.int32)
  mask[:, : size // 2] = 1
  mask[2:12, 20:30] = 2
  mask[20:, 24:] = 3
  image = np.repeat((mask * 60)[..., None], 3, axis=-1).astype(np.uint8)
  return {"image": tf.constant(image), "mask": tf.constant(mask)}


@pytest.mark.parametrize("scale", [False, True])
def test_augmentation_moves_image_and_mask_together(scale):
  spec = dataclasses.replace(data.get_spec("shapes/64"), image_shape=(32, 32, 3),
                             scale_range=(0.6, 1.6))
  settings = datasets_lib.Settings(spec=spec, data_dir=None, image_shape=(32, 32, 3),
                                  random_crop=scale, crop_padding=0, flip=True, shuffle_buffer=1)
  ex = synthetic_example()
  flipped = padded = 0
  for i in range(16):
    out = seg_data.train_example(ex, settings, tf.constant([i, 7], tf.int64))
    mask, pixels = out["mask"].numpy(), out["image"].numpy()  # unnormalised: [0, 255]
    labelled = mask != 255
    off = np.abs(pixels[..., 0] - 60 * mask) > 30  # the image says another class
    if scale:  # bilinear image vs nearest mask: only pixels on class borders may differ
      assert off[labelled].mean() < 0.08
      padded += (~labelled).any()
    else:
      assert not off.any()
      flipped += mask[0, -1] == 1  # the left half of the asymmetric layout is now on the right
  assert (padded > 0) if scale else (0 < flipped < 16)


TINY = ShapesConfig(name="segmentation_test", image_size=32, num_train=40, num_test=10,
                    min_extent=0.25, max_extent=0.5)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds_shapes"))
  tfds.builder("shapes", config=TINY, data_dir=data_dir).download_and_prepare()
  return data_dir


@pytest.fixture
def tiny(tiny_dir, monkeypatch):
  """A dataset config over the tiny shapes build (registered as dataset 'tiny_shapes')."""
  spec = dataclasses.replace(data.get_spec("shapes/64"), name="tiny_shapes",
                             tfds_name=f"shapes/{TINY.name}", image_shape=(32, 32, 3),
                             offline_build=False)
  monkeypatch.setitem(datasets_lib.DATASETS, "tiny_shapes", spec)
  return ml_collections.ConfigDict(dict(name="tiny_shapes", data_dir=tiny_dir, image_size=0,
                                        crop_padding=-1, flip=None, shuffle_buffer=1000))


def test_info_and_batches(tiny):
  spec = datasets_lib.DATASETS["tiny_shapes"]
  assert data.dataset_info(tiny) == data.DatasetInfo("tiny_shapes", 4, (32, 32, 3), 40, 10,
                                                     spec.mean, spec.std)
  batch = next(data.train_batches(tiny, global_batch_size=8, seed=0))
  assert set(batch) == {"image", "mask"}
  assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
  assert batch["mask"].shape == (8, 32, 32) and batch["mask"].dtype == np.int32
  assert set(np.unique(batch["mask"])) <= {0, 1, 2, 3, 255}
  check_segmentation_batch(batch, image_shape=(32, 32, 3), num_classes=4)


def test_train_batches_resume_exactly(tiny):
  # 40 examples, batches of 12: steps 2..4 cross the epoch boundary.
  run = data.train_batches(tiny, global_batch_size=12, seed=3)
  full = [next(run) for _ in range(5)]
  resumed = data.train_batches(tiny, global_batch_size=12, seed=3, start_step=2)
  for expected in full[2:]:
    got = next(resumed)
    np.testing.assert_array_equal(got["image"], expected["image"])
    np.testing.assert_array_equal(got["mask"], expected["mask"])
  other = next(data.train_batches(tiny, global_batch_size=12, seed=4))
  assert not np.array_equal(other["mask"], full[0]["mask"])


def test_eval_batches_cover_the_split_once_with_ignored_padding(tiny_dir, tiny):
  batches = list(data.eval_batches(tiny, global_batch_size=8))
  assert len(batches) == 2
  weight = np.concatenate([b["weight"] for b in batches])
  masks = np.concatenate([b["mask"] for b in batches])
  np.testing.assert_array_equal(weight, [1] * 10 + [0] * 6)
  assert np.all(masks[10:] == 255)
  stored = tfds.as_numpy(tfds.builder(f"shapes/{TINY.name}", data_dir=tiny_dir).as_dataset(
      split="test", shuffle_files=False))
  assert sorted(m.tobytes() for m in masks[:10]) == sorted(
      ex["mask"][..., 0].astype(np.int32).tobytes() for ex in stored)


@pytest.mark.parametrize("name,num_classes,max_value", [("oxford_iiit_pet", 2, 3),
                                                        ("voc2012_segmentation", 21, 20)])
def test_mocked_real_datasets(name, num_classes, max_value, tmp_path):
  config = ml_collections.ConfigDict(dict(name=name, data_dir=str(tmp_path), image_size=64,
                                          crop_padding=-1, flip=None, shuffle_buffer=100))
  # Mocked values up to the largest stored label (pets: trimap 1..3; VOC: classes 0..20).
  with tfds.testing.mock_data(num_examples=6, max_value=max_value,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    info = data.dataset_info(config)
    train = [b for b, _ in zip(data.train_batches(config, global_batch_size=4, seed=0), range(2))]
    evals = list(data.eval_batches(config, global_batch_size=4))
  assert info.num_classes == num_classes and info.image_shape == (64, 64, 3)
  for b in train + evals:
    assert b["image"].shape == (4, 64, 64, 3) and np.all(np.isfinite(b["image"]))
    assert b["mask"].shape == (4, 64, 64) and b["mask"].dtype == np.int32
    check_segmentation_batch(b, image_shape=(64, 64, 3), num_classes=num_classes)
  assert len(evals) == 2 and sum(b["weight"].sum() for b in evals) == 6


def test_pet_trimaps_map_to_pet_background_and_ignore():
  spec = data.get_spec("oxford_iiit_pet")
  raw = tf.constant(np.array([[1, 2, 3, 0]], np.uint8)[..., None])
  out = seg_data.fields({"image": tf.zeros((1, 4, 3), tf.uint8), "segmentation_mask": raw}, spec)
  np.testing.assert_array_equal(out["mask"], [[1, 0, 255, 255]])


# ------------------------------------------------------------------------------- training


def test_fit_trains_and_saves_overlays(tiny, tmp_path):
  from jaxvision.training.config import default_config
  from jaxvision.training.fit import fit

  c = default_config()
  c.task = "segmentation"
  c.model.name = "unet"
  c.model.options.widths = (4, 8)
  c.dataset.update(tiny.to_dict())
  c.batch_size, c.eval_batch_size = 8, 8
  c.num_train_steps = 3
  c.best_metric = "miou"
  c.plot = False
  with jax.default_prng_impl("rbg"):  # see KEY
    summary = fit(c, tmp_path, progress=False)
  assert summary["steps"] == 3
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  final = [r for r in rows if r["split"] == "eval"][-1]
  assert 0.0 <= final["miou"] <= 1.0 and 0.0 <= final["accuracy"] <= 1.0
  overlays = sorted((tmp_path / "overlays").glob("*.png"))
  assert len(overlays) == 8
  from PIL import Image
  assert Image.open(overlays[0]).size == (3 * 32 + 4, 32)  # image | truth | prediction


def test_voc2012_segmentation_builder_reads_a_devkit(tmp_path):
  from PIL import Image
  devkit = tmp_path / "manual" / "VOCdevkit" / "VOC2012"
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    (devkit / sub).mkdir(parents=True)
  rs = np.random.RandomState(0)
  masks = {}
  for name in ("2007_000032", "2007_000039", "2007_000063"):
    Image.fromarray(rs.randint(0, 255, (12, 16, 3)).astype(np.uint8)).save(
        devkit / "JPEGImages" / f"{name}.jpg")
    mask = rs.choice([0, 5, 15, 255], (12, 16)).astype(np.uint8)
    png = Image.fromarray(mask, mode="P")
    png.putpalette(list(np.random.RandomState(1).randint(0, 255, 768)))
    png.save(devkit / "SegmentationClass" / f"{name}.png")
    masks[name] = mask
  (devkit / "ImageSets/Segmentation/train.txt").write_text("2007_000032\n2007_000039\n")
  (devkit / "ImageSets/Segmentation/val.txt").write_text("2007_000063\n")
  builder = tfds.builder("voc2012_segmentation", data_dir=str(tmp_path / "data"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(tmp_path / "manual")))
  assert builder.info.splits["train"].num_examples == 2
  examples = list(tfds.as_numpy(builder.as_dataset(split="validation")))
  assert len(examples) == 1
  ex = examples[0]
  assert ex["image"].shape == (12, 16, 3)
  np.testing.assert_array_equal(ex["segmentation_mask"][..., 0], masks["2007_000063"])


@pytest.mark.slow  # the full runs: about 3 and 6 CPU-minutes
@pytest.mark.parametrize("name,bar", [("fcn_shapes", 0.80), ("unet_shapes", 0.90)])
def test_shapes_configs_reach_their_documented_miou(name, bar, tmp_path):
  """The benchmark configs in full reach docs/BENCHMARKS.md's mIoU (FCN-8s 0.866, U-Net 0.941)
  within a margin."""
  import importlib

  from jaxvision.training.fit import fit

  c = importlib.import_module(f"jaxvision.configs.{name}").get_config()
  c.dataset.data_dir = str(tmp_path / "data")
  c.plot = False
  summary = fit(c, tmp_path / "run", progress=False)
  assert summary["eval"]["miou"] >= bar
