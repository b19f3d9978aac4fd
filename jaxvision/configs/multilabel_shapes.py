"""Multi-label classification on `shapes/64`: which of circle, square, triangle appear in each
image. A narrow ResNet-10-style network, per-class sigmoid cross-entropy, mAP over images;
offline, about 8 minutes on 2 (shared) CPU cores: mAP 0.93 (it stays near 0.7 for the first 4
epochs, then climbs).

  jaxvision-train --config multilabel_shapes --workdir runs/multilabel_shapes

`shapes_multilabel/64` is `shapes_detection/64` read without its boxes: an image's labels are
the classes of its objects (jaxvision.data.multilabel).
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.task = "multilabel_classification"
  c.model.name = "resnet"
  # One basic block per stage at half ResNet-18's width; stages unrolled (fast on CPU).
  c.model.options = dict(stage_sizes=(1, 1, 1, 1), widths=(32, 64, 128, 256), stem_width=32,
                         scan=False)
  c.dataset.name = "shapes_multilabel/64"
  c.batch_size = 32
  c.eval_batch_size = 100
  c.num_epochs = 10.0
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 0.1
  c.eval_every_steps = 156
  c.best_metric = "map"
  return c
