"""Mask R-CNN and instance segmentation: per-object masks in the shapes data and the detection
pipeline, mask targets, the mask loss, mask AP through pycocotools, the model's outputs and
parameters, the task, the overlays, and learning on shapes."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.data.builders.shapes import ShapesConfig, render, render_instances
from jaxvision.losses.mask_rcnn import mask_loss, mask_rcnn_losses
from jaxvision.metrics.coco import coco_evaluate, to_coco_json
from jaxvision.metrics.masks import encode, paste_masks
from jaxvision.models import create_model
from jaxvision.models.mask_rcnn import mask_targets

SHAPES = ShapesConfig(name="mask_test", image_size=32, num_train=16, num_test=4, max_shapes=4)

# --- data ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(8))
def test_shapes_instances_agree_with_the_class_mask_and_the_boxes(index):
  image, mask, instances, boxes, labels = render_instances(SHAPES, "train", index)
  assert instances.shape == mask.shape == (32, 32, 1) and instances.dtype == np.uint8
  mask, instances = mask[..., 0], instances[..., 0]
  assert instances.max() == len(boxes) and np.array_equal(instances > 0, mask > 0)
  for i, (box, label) in enumerate(zip(boxes, labels)):
    rows, cols = np.nonzero(instances == i + 1)
    tight = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]) / 32
    np.testing.assert_allclose(tight, box, atol=1e-6)
    assert (mask[instances == i + 1] == label + 1).all()
  # The 1.0.0 features are unchanged by the new one.
  for old, new in zip(render(SHAPES, "train", index), (image, mask[..., None], boxes, labels)):
    np.testing.assert_array_equal(old, new)


@pytest.fixture
def masks_dataset(tiny_shapes, monkeypatch):
  """A detection dataset config over a tiny shapes build, with instance masks."""
  from jaxvision.data import detection
  from jaxvision.data.config import default_dataset_config

  data_dir, spec = tiny_shapes(SHAPES, "masks_tiny")
  monkeypatch.setitem(detection.DATASETS, "masks_tiny", spec)
  c = default_dataset_config()
  c.name, c.data_dir, c.instance_masks = "masks_tiny", data_dir, True
  return c


def _tight_boxes(masks):
  rows, cols = masks.any(-1), masks.any(-2)
  return np.array([np.argmax(rows), np.argmax(cols), len(rows) - np.argmax(rows[::-1]),
                   len(cols) - np.argmax(cols[::-1])]) / masks.shape[-1]


def test_pipeline_carries_instance_masks_that_move_with_the_boxes(masks_dataset):
  from jaxvision import data

  for seed in range(3):  # rescaled, shifted and flipped (or not) with the image
    batch = next(data.train_batches(masks_dataset, global_batch_size=8, seed=seed))
    masks = batch["instance_masks"]
    assert masks.shape == (8, 8, 32, 32) and masks.dtype == np.uint8
    assert not masks[~batch["valid"]].any()
    for b, n in np.argwhere(batch["valid"]):
      np.testing.assert_allclose(_tight_boxes(masks[b, n]), batch["boxes"][b, n], atol=2.5 / 32)
  batch = next(data.eval_batches(masks_dataset, global_batch_size=4))
  examples = [render_instances(SHAPES, "test", i) for i in range(4)]  # in the files' order
  for b in range(4):
    n = int(batch["valid"][b].sum())
    (match,) = [e for e in examples if len(e[3]) == n and np.allclose(e[3], batch["boxes"][b, :n])]
    instances = match[2][..., 0]
    for i in range(n):  # evaluation: exactly the builder's masks
      np.testing.assert_array_equal(batch["instance_masks"][b, i], instances == i + 1)
    assert not batch["instance_masks"][b, n:].any()


def test_instance_masks_only_when_asked_and_where_they_exist(masks_dataset):
  from jaxvision import data
  from jaxvision.data.config import default_dataset_config
  from jaxvision.data.detection import settings

  masks_dataset.instance_masks = False
  assert "instance_masks" not in next(data.eval_batches(masks_dataset, global_batch_size=4))
  voc = default_dataset_config()
  voc.name, voc.instance_masks = "voc/2007", True
  with pytest.raises(ValueError, match=r"dataset_config.instance_masks: voc/2007 has no "
                                       r"per-object masks; expected False"):
    settings(voc)


# --- mask targets and loss -------------------------------------------------------------------


def test_mask_targets_resample_the_true_mask_into_the_roi():
  masks = np.zeros((2, 32, 32), np.float32)
  masks[0, 8:16, 8:16] = 1  # a square
  masks[1, 20:28, 4:12] = 1
  rois = jnp.array([[8.0, 8.0, 16.0, 16.0],   # the square's own box: all ones (but the corners)
                    [4.0, 4.0, 20.0, 20.0],   # twice as large: the middle half
                    [4.0, 20.0, 12.0, 28.0],  # the second object's box
                    [16.0, 16.0, 24.0, 24.0]])  # beside the square
  t = np.asarray(mask_targets(masks, jnp.array([0, 0, 1, 0]), rois, 28))
  assert t.shape == (4, 28, 28) and set(np.unique(t)) <= {0.0, 1.0}
  assert t[0][1:-1].all() and t[0][:, 1:-1].all() and t[0].mean() > 0.99
  inner = np.zeros((28, 28), bool)
  inner[7:21, 7:21] = True
  np.testing.assert_array_equal(t[1], inner)
  assert t[2].mean() > 0.99 and not t[3].any()


def random_mask_outputs(rs, p=5, k=3):
  return {"logits": jnp.asarray(rs.randn(2, p, 28, 28, k), jnp.float32),
          "classes": jnp.asarray(rs.randint(0, k, (2, p)), jnp.int32),
          "targets": jnp.asarray(rs.rand(2, p, 28, 28) > 0.5, jnp.float32),
          "valid": jnp.asarray(rs.rand(2, p) > 0.4)}


def test_mask_loss_is_the_mean_bce_of_the_true_class_on_positives_only():
  rs = np.random.RandomState(0)
  m = random_mask_outputs(rs)
  logits, classes, targets, valid = (np.asarray(m[k], np.float64) for k in m)
  own = np.take_along_axis(logits, classes.astype(int)[..., None, None, None], -1)[..., 0]
  bce = np.maximum(own, 0) - own * targets + np.log1p(np.exp(-np.abs(own)))
  want = bce[valid.astype(bool)].mean()
  loss = mask_loss(m["logits"], m["classes"], m["targets"], m["valid"])
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  # Only the true class's channel of the positive RoIs gets a gradient.
  grad = np.asarray(jax.grad(mask_loss)(m["logits"], m["classes"], m["targets"], m["valid"]))
  picked = (np.arange(3) == classes[..., None]) & valid.astype(bool)[..., None]
  assert np.abs(grad.sum((2, 3))[picked]).min() > 0
  assert not grad.transpose(0, 1, 4, 2, 3)[~picked].any()
  # Perfect logits: zero loss; no positives: zero loss.
  perfect = jnp.where(m["targets"][..., None] > 0, 40.0, -40.0) * jnp.ones((1, 1, 1, 1, 3))
  assert float(mask_loss(perfect, m["classes"], m["targets"], m["valid"])) < 1e-6
  assert float(mask_loss(m["logits"], m["classes"], m["targets"], m["valid"] & False)) == 0.0
  with pytest.raises(ValueError, match=r"logits, classes, targets, valid: expected"):
    mask_loss(m["logits"][..., 0], m["classes"], m["targets"], m["valid"])


def test_mask_rcnn_losses_add_the_mask_term():
  from test_faster_rcnn import perfect_outputs

  from jaxvision.losses.rcnn import rcnn_losses

  out = perfect_outputs()
  with pytest.raises(ValueError, match=r"outputs: expected Mask R-CNN's training outputs"):
    mask_rcnn_losses(out)
  out["mask"] = random_mask_outputs(np.random.RandomState(1))
  total, terms = mask_rcnn_losses(out)
  assert float(total) == pytest.approx(float(rcnn_losses(out)[0]) + float(terms["loss_mask"]))
  assert float(terms["loss_mask"]) > 0.5


# --- mask AP ---------------------------------------------------------------------------------


def test_paste_masks_fills_the_box():
  boxes = np.array([[4.0, 6.0, 12.0, 20.0], [0.0, 0.0, 32.0, 32.0]])
  half = np.zeros((28, 28), np.float32)
  half[:, :14] = 1.0  # the left half of the box
  out = paste_masks(np.stack([np.ones((28, 28), np.float32), half]), boxes, 24, 32)
  assert out.shape == (2, 24, 32) and out.dtype == np.uint8
  want = np.zeros((24, 32), np.uint8)
  want[6:20, 4:12] = 1
  np.testing.assert_array_equal(out[0], want)
  assert out[1][:, :16].all() and not out[1][:, 16:].any()
  with pytest.raises(ValueError, match=r"masks: expected \[D, M, M\] with D = 2"):
    paste_masks(np.ones((1, 28, 28)), boxes, 24, 32)


def two_objects():
  gt = np.zeros((2, 40, 40), np.uint8)
  gt[0, 4:16, 4:16] = 1
  yy, xx = np.mgrid[:40, :40]
  gt[1] = (yy - 28) ** 2 + (xx - 26) ** 2 <= 36
  return gt, np.array([[4, 4, 16, 16], [20, 22, 33, 35]], np.float64), np.array([0, 1])


def image_record(gt, boxes, classes, det_masks, scores):
  return {"height": 40, "width": 40, "gt_boxes": boxes, "gt_classes": classes, "gt_masks": gt,
          "det_boxes": boxes, "det_classes": classes, "det_scores": scores,
          "det_masks": det_masks}


def test_segm_ap_of_perfect_and_shifted_masks():
  gt, boxes, classes = two_objects()
  scores = np.array([0.9, 0.8])
  perfect = coco_evaluate(*to_coco_json([image_record(gt, boxes, classes, gt, scores)], 2),
                          iou_type="segm")
  assert perfect["AP"] == pytest.approx(1.0) and perfect["AP50"] == pytest.approx(1.0)
  shifted = np.roll(gt, 6, axis=2)  # the same boxes, masks moved half off the objects
  moved = coco_evaluate(*to_coco_json([image_record(gt, boxes, classes, shifted, scores)], 2),
                        iou_type="segm")
  assert moved["AP"] < 0.5 and moved["AP50"] < 1.0
  # The box AP does not see the masks.
  box = coco_evaluate(*to_coco_json([image_record(gt, boxes, classes, shifted, scores)], 2))
  assert box["AP"] == pytest.approx(1.0)
  with pytest.raises(ValueError, match=r"iou_type: expected 'bbox' or 'segm', got 'mask'"):
    coco_evaluate(*to_coco_json([image_record(gt, boxes, classes, gt, scores)], 2), "mask")


def test_segm_ap_matches_pycocotools_by_hand():
  """Our export + coco_evaluate against pycocotools fed directly with its own RLEs."""
  import contextlib
  import io

  from pycocotools import mask as mask_utils
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  gt, boxes, classes = two_objects()
  rs = np.random.RandomState(0)
  det = np.stack([np.roll(gt[0], 2, 0), np.roll(gt[1], 1, 1), np.roll(gt[0], 5, 1)])
  det_classes, det_scores = np.array([0, 1, 0]), np.array([0.6, 0.9, 0.7])
  det_boxes = np.concatenate([boxes, boxes[:1]]) + rs.rand(3, 4)
  im = {"height": 40, "width": 40, "gt_boxes": boxes, "gt_classes": classes, "gt_masks": gt,
        "det_boxes": det_boxes, "det_classes": det_classes, "det_scores": det_scores,
        "det_masks": det}
  ours = coco_evaluate(*to_coco_json([im], 2), iou_type="segm")

  def rle(m):
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))

  dataset = {"images": [{"id": 1, "height": 40, "width": 40}],
             "categories": [{"id": 1}, {"id": 2}],
             "annotations": [{"id": i + 1, "image_id": 1, "category_id": int(c) + 1,
                              "segmentation": rle(m), "area": float(m.sum()), "iscrowd": 0,
                              "bbox": list(mask_utils.toBbox(rle(m)))}
                             for i, (m, c) in enumerate(zip(gt, classes))]}
  results = [{"image_id": 1, "category_id": int(c) + 1, "segmentation": rle(m), "score": float(s)}
             for m, c, s in zip(det, det_classes, det_scores)]
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(results), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  np.testing.assert_allclose([ours["AP"], ours["AP50"], ours["AP75"]], ev.stats[:3])
  assert 0.0 < ours["AP"] < 1.0
  assert encode(np.zeros((0, 4, 4))) == []


# --- the model -------------------------------------------------------------------------------


C = 3
TINY = dict(backbone="resnet", backbone_options=dict(stage_sizes=(1, 1), widths=(4, 8),
                                                     stem="imagenet", stem_width=4),
            anchor_sizes=(8, 12), aspect_ratios=(1.0,), anchor_offset=0.5,
            representation_size=16, roi_output_size=3, roi_batch_size=8, max_detections=6,
            rpn_pre_nms_top_n_train=24, rpn_post_nms_top_n_train=12, rpn_pre_nms_top_n_test=24,
            rpn_post_nms_top_n_test=10, rpn_batch_size=16, mask_width=8, mask_num_convs=2,
            mask_feature_level=0)
IMAGES = np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32)


def tiny_targets():
  boxes = np.array([[[0.125, 0.125, 0.5, 0.375], [0.5, 0.625, 0.875, 0.875]],
                    [[0.25, 0.25, 0.625, 0.625], [0.0, 0.0, 0.0, 0.0]]], np.float32)
  masks = np.zeros((2, 2, 32, 32), np.uint8)
  for b, n in [(0, 0), (0, 1), (1, 0)]:
    y0, x0, y1, x1 = (boxes[b, n] * 32).astype(int)
    masks[b, n, y0:y1, x0:x1] = 1
  return {"boxes": boxes, "classes": np.array([[0, 2], [1, 0]], np.int32),
          "valid": np.array([[True, True], [True, False]]), "masks": masks}


@pytest.fixture(scope="module")
def tiny_model():
  model = create_model("mask_rcnn", num_classes=C, **TINY)
  variables = jax.jit(lambda: model.init(jax.random.key(0), IMAGES, train=False))()
  return model, variables


def test_mask_rcnn_outputs_and_parameters(tiny_model):
  model, variables = tiny_model
  faster = create_model("faster_rcnn", num_classes=C, **{k: v for k, v in TINY.items()
                                                         if not k.startswith("mask_")})
  base = jax.eval_shape(lambda: faster.init(jax.random.key(0), IMAGES, train=False))
  params = variables["params"]
  assert set(params) == set(base["params"]) | {"mask_head"}  # Faster R-CNN's, plus the head
  shapes = jax.tree.map(lambda x: x.shape, params["mask_head"])
  assert shapes == {"mask_fcn1": {"kernel": (3, 3, 4, 8), "bias": (8,)},  # the stride-4 map
                    "mask_fcn2": {"kernel": (3, 3, 8, 8), "bias": (8,)},
                    "conv5_mask": {"kernel": (2, 2, 8, 8), "bias": (8,)},
                    "mask_fcn_logits": {"kernel": (1, 1, 8, C), "bias": (C,)}}
  out = jax.jit(lambda v: model.apply(v, IMAGES, train=False))(variables)
  masks = np.asarray(out["detections"]["masks"])
  assert masks.shape == (2, 6, 28, 28) and ((masks >= 0) & (masks <= 1)).all()
  assert "mask" not in out
  targets = tiny_targets()
  train, _ = jax.eval_shape(lambda v: model.apply(
      v, IMAGES, train=True, targets=targets, rngs={"sampling": jax.random.key(0)},
      mutable=["batch_stats"]), variables)
  p = 2  # roi_batch_size 8 x positive fraction 0.25
  assert train["mask"]["logits"].shape == (2, p, 28, 28, C)
  assert train["mask"]["targets"].shape == (2, p, 28, 28)
  assert train["mask"]["classes"].shape == train["mask"]["valid"].shape == (2, p)
  assert "detections" not in train
  with pytest.raises(ValueError, match=r"targets\['masks'\]: expected the instance masks of "
                                       r"shape \(2, 2, 32, 32\)"):
    model.apply(variables, IMAGES, train=False, targets={**targets, "masks": targets["masks"][0]})


def test_mask_branch_trains_on_the_true_boxes_masks(tiny_model):
  """The sampled positives (the true boxes are among the candidates) get their own masks as
  targets, with their classes."""
  model, variables = tiny_model
  targets = tiny_targets()
  out = jax.jit(lambda v: model.apply(v, IMAGES, train=False, targets=targets))(variables)
  m = jax.tree.map(np.asarray, out["mask"])
  assert m["valid"].any()
  for b, r in np.argwhere(m["valid"]):
    # Boxes are full rectangles here, and positives overlap their box by IoU >= 0.5.
    assert m["classes"][b, r] in targets["classes"][b][targets["valid"][b]]
    assert 0.3 < m["targets"][b, r].mean() <= 1.0


def test_mask_rcnn_is_registered_with_its_options():
  from jaxvision.models import model_options

  assert {"mask_width", "mask_num_convs", "mask_roi_size", "mask_feature_level",
          "mask_rois_per_image", "anchor_sizes"} <= set(model_options("mask_rcnn"))
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['mask_width'\]"):
    create_model("faster_rcnn", num_classes=C, mask_width=8)
  bad = create_model("mask_rcnn", num_classes=C, **{**TINY, "mask_rois_per_image": -1})
  with pytest.raises(ValueError, match=r"mask_rois_per_image: expected >= 0"):
    jax.eval_shape(lambda: bad.init(jax.random.key(0), IMAGES, train=False))


# --- the task --------------------------------------------------------------------------------


def test_task_scores_perfect_masks_and_checks_batches(tiny_model):
  from test_faster_rcnn import perfect_outputs

  from jaxvision.training.mask_rcnn_task import InstanceSegmentation

  model, _ = tiny_model
  task = InstanceSegmentation(model, C)
  t = tiny_targets()
  pixel = (t["boxes"] * 32)[..., [1, 0, 3, 2]]
  out = perfect_outputs()
  out["mask"] = random_mask_outputs(np.random.RandomState(0))
  out["detections"] = {"boxes": pixel, "scores": np.array([[0.9, 0.8], [0.7, 0.0]], np.float32),
                       "labels": t["classes"], "valid": t["valid"],
                       "masks": np.ones((2, 2, 28, 28), np.float32)}  # rectangles: full boxes
  batch = {"image": IMAGES, **{k: t[k] for k in ("boxes", "classes", "valid")},
           "instance_masks": t["masks"]}
  acc = task.accumulator()
  acc.add(jax.jit(task.eval_outputs)(out, batch))
  r = acc.result()
  assert r["mask_ap50"] == pytest.approx(1.0) and r["mask_ap"] == pytest.approx(1.0)
  assert {"mask_ap", "mask_ap50", "mask_ap75", "map_voc07"} <= set(task.eval_metric_names)
  out["detections"]["masks"] = np.zeros((2, 2, 28, 28), np.float32)  # empty masks
  acc = task.accumulator()
  acc.add(jax.jit(task.eval_outputs)(out, batch))
  assert acc.result()["mask_ap50"] == 0.0
  assert task.model_kwargs(batch, train=True)["targets"]["masks"] is t["masks"]
  with pytest.raises(ValueError, match=r"batch\['instance_masks'\]: expected shape "
                                       r"\(2, 2, 32, 32\)"):
    task.check_batch({**batch, "instance_masks": t["masks"][:, :1]}, image_shape=(32, 32, 3),
                     num_classes=C)
  with pytest.raises(ValueError, match=r"model: the instance_segmentation task needs a Mask "
                                       r"R-CNN model \(mask_rcnn\), got FasterRCNN"):
    InstanceSegmentation(create_model("faster_rcnn", num_classes=C, backbone="resnet18"), C)


def test_instance_overlays_are_written(tmp_path):
  from jaxvision.plots.instance_overlays import blend_masks, save_instances

  image = np.full((16, 16, 3), 100.0)
  masks = np.zeros((1, 16, 16), np.uint8)
  masks[0, 2:6, 2:6] = 1
  blended = blend_masks(image, masks)
  assert (blended[2:6, 2:6] != 100).any(axis=-1).all() and (blended[8:] == 100).all()
  targets = {"boxes": np.array([[[0.1, 0.1, 0.4, 0.4]]]), "classes": np.array([[1]]),
             "valid": np.array([[True]])}
  found = {"boxes": targets["boxes"], "scores": np.array([[0.9]]), "classes": np.array([[1]]),
           "valid": np.array([[True]]), "masks": masks[None]}
  paths = save_instances(tmp_path, image[None], targets, found, class_names=("a", "b"))
  assert [p.name for p in paths] == ["000.png"] and paths[0].stat().st_size > 0
  with pytest.raises(ValueError, match=r"masks: expected \[D, 16, 16\] like the image"):
    blend_masks(image, masks[:, :8])


# --- training --------------------------------------------------------------------------------


def test_config_needs_instance_masks():
  from jaxvision.training.tasks import make_task

  c = importlib.import_module("jaxvision.configs.mask_rcnn_shapes").get_config()
  model = create_model(c.model.name, num_classes=3, **c.model.options)
  c.dataset.instance_masks = False
  with pytest.raises(ValueError, match=r"config.dataset.instance_masks: the "
                                       r"instance_segmentation task trains on per-object masks"):
    make_task(c, model)


@pytest.mark.slow  # 215 s of training at load 7 on 2 cores (5 min with the data build)
def test_mask_rcnn_learns_shapes_instances(tiny_shapes, tmp_path, monkeypatch):
  """Mask R-CNN on 32x32 shapes (2048 images), 600 steps (test_learning's Faster R-CNN run plus
  a mask head): mask AP@0.5 >= 0.5 (0.721 measured; mask AP 0.378, box VOC07 mAP 0.788), against
  about 0.0001 for an untrained model (20 steps of the shapes config); a wrong mask target, class
  channel or paste finds few masks at IoU 0.5."""
  from test_learning import faster_rcnn_short_run

  from jaxvision.training.fit import fit

  c = faster_rcnn_short_run("instance_segmentation", "mask_rcnn", "mask_ap50", tiny_shapes,
                            monkeypatch)
  c.dataset.instance_masks = True
  o = c.model.options
  o.mask_width, o.mask_num_convs, o.mask_feature_level, o.mask_rois_per_image = 16, 2, 0, 4
  o.max_detections = 16
  summary = fit(c, tmp_path, progress=False)
  assert summary["eval"]["mask_ap50"] >= 0.5, summary["eval"]
  assert len(list((tmp_path / "instances").iterdir())) == 8  # the overlays


@pytest.mark.slow  # the full config: about 8 minutes on a loaded 2-core CPU
def test_mask_rcnn_shapes_config_reaches_its_bar(tmp_path):
  from jaxvision.training.fit import fit

  c = importlib.import_module("jaxvision.configs.mask_rcnn_shapes").get_config()
  c.plot = False
  summary = fit(c, tmp_path, progress=False)
  assert summary["eval"]["mask_ap50"] >= 0.70, summary["eval"]
