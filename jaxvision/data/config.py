"""The dataset part of the training config, with its defaults (no TensorFlow)."""

import ml_collections


def default_dataset_config() -> ml_collections.ConfigDict:
  """`config.dataset`: every key the input pipelines read, with its default."""
  c = ml_collections.ConfigDict()
  c.name = "digits"          # a dataset of datasets.py, detection.py or multilabel.py
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.image_size = 0           # 0: the dataset's native size; else resize/crop to this
  c.crop_padding = -1        # -1: the dataset's default; 0 disables random crop
  c.flip = ml_collections.FieldReference(None, field_type=bool)  # None: dataset default
  c.shuffle_buffer = 10_000
  c.max_boxes = 0            # detection: boxes per image after padding (0: dataset default)
  c.drop_extra_boxes = False  # detection: drop boxes past max_boxes (with a warning) or fail
  c.instance_masks = False   # detection: also carry per-object masks (`instance_masks`)
  return c
