"""Fast learning tests (issue #21 item 3): a short run on tiny offline data must clear a bar far
above chance, so that a broken loss, label mapping or target encoding fails `make test`.
Classification, YOLO detection and U-Net segmentation so far; Faster R-CNN and multi-label
still to come."""

from jaxvision.training.config import default_config
from jaxvision.training.fit import fit


def test_cifar_resnet_learns_digits(digits_dir, tmp_path):
  """A narrow CIFAR-style ResNet on the 8x8 digits (10 classes, chance 10%): >= 90% test
  accuracy after 3 epochs (about 70 steps)."""
  c = default_config()
  c.model.name = "resnet"
  c.model.options.update(dict(stage_sizes=(1, 1), widths=(16, 32), stem="cifar", stem_width=16))
  c.dataset.name = "digits"
  c.dataset.data_dir = digits_dir
  c.batch_size = 64
  c.num_epochs = 3.0
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-2
  c.optimizer.weight_decay = 1e-4
  c.plot = False
  summary = fit(c, tmp_path, progress=False)
  assert summary["eval"]["accuracy"] >= 0.90, summary["eval"]


SHAPES = dict(image_size=32, num_train=512, num_test=64, min_extent=0.3, max_extent=0.5)


def test_yolo_learns_shapes_detection(tiny_shapes, tmp_path, monkeypatch):
  """YOLOv2 on a narrow ResNet, 32x32 shapes (3 classes, 1-4 per image), 200 steps: VOC07
  mAP@0.5 >= 0.25 (0.39 measured; an untrained detector's boxes score near 0)."""
  from jaxvision.data import detection
  from jaxvision.data.builders.shapes import ShapesConfig

  data_dir, spec = tiny_shapes(ShapesConfig(name="learning_det", **SHAPES), "learning_detection")
  monkeypatch.setitem(detection.DATASETS, "learning_detection", spec)
  c = default_config()
  c.task = "detection"
  c.model.name = "yolov2"
  c.model.options.backbone = "resnet"
  c.model.options.backbone_options = dict(stage_sizes=(1, 1), widths=(16, 32), stem="imagenet",
                                          stem_width=16)
  c.model.options.head_width = 32
  c.model.options.head_depth = 1
  c.model.options.anchors = ((0.3, 0.3), (0.45, 0.45))
  c.dataset.name = "learning_detection"
  c.dataset.data_dir = data_dir
  c.batch_size, c.eval_batch_size = 32, 64
  c.num_train_steps = 200
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_epochs = 1.0
  c.eval_every_steps = c.checkpoint_every_steps = 200
  c.best_metric = "map_voc07"
  c.plot = False
  summary = fit(c, tmp_path, progress=False)
  assert summary["eval"]["map_voc07"] >= 0.25, summary["eval"]


SEGMENTATION_SHAPES = dict(image_size=32, num_train=512, num_test=64, min_extent=0.4,
                           max_extent=0.7, max_shapes=2)


def test_unet_learns_shapes_segmentation(tiny_shapes, tmp_path, monkeypatch):
  """A 3-level U-Net (widths 16/32/64) on 32x32 shapes (1-2 large shapes, 4 classes with
  background), 300 steps of 16: test mIoU >= 0.5 (0.739 measured, the same in every run; each
  class's IoU >= 0.55), against 0.19 for predicting all background (computed below from the test
  masks). U-Net, not FCN-8s: on 32x32 inputs FCN-8s's coarsest map is 1x1, and it learned more
  slowly (mIoU < 0.5 at 127 s). About 80 CPU-seconds, compilations included."""
  import dataclasses

  import jax
  import numpy as np

  from jaxvision import data
  from jaxvision.data import datasets as datasets_lib
  from jaxvision.data.builders.shapes import ShapesConfig
  from jaxvision.metrics.segmentation import segmentation_scores

  data_dir, _ = tiny_shapes(ShapesConfig(name="learning_seg", **SEGMENTATION_SHAPES),
                            "learning_seg_detection")
  spec = dataclasses.replace(data.get_spec("shapes/64"), name="learning_segmentation",
                             tfds_name="shapes/learning_seg", image_shape=(32, 32, 3),
                             offline_build=False)
  monkeypatch.setitem(datasets_lib.DATASETS, "learning_segmentation", spec)
  c = default_config()
  c.task = "segmentation"
  c.model.name = "unet"
  c.model.options.widths = (16, 32, 64)
  c.dataset.name = "learning_segmentation"
  c.dataset.data_dir = data_dir
  c.batch_size, c.eval_batch_size = 16, 64
  c.num_train_steps = 300
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.weight_decay = 1e-4
  c.eval_every_steps = c.checkpoint_every_steps = 300
  c.best_metric = "miou"
  c.plot = False
  # The all-background prediction's mIoU on the same test split (the chance level to beat).
  masks = np.concatenate([b["mask"][b["weight"] > 0]
                          for b in data.eval_batches(c.dataset, global_batch_size=64)])
  cm = np.zeros((4, 4), np.int64)
  cm[:, 0] = np.bincount(masks[masks != 255].ravel(), minlength=4)
  background = segmentation_scores(cm)["miou"]
  assert background < 0.25, background
  with jax.default_prng_impl("rbg"):  # XLA:CPU compiles threefry inits several times slower
    summary = fit(c, tmp_path, progress=False)
  assert summary["eval"]["miou"] >= max(0.5, 2 * background), (background, summary["eval"])
