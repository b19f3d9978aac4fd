"""The classification and segmentation datasets, their defaults, and a dataset config resolved
against them (no TensorFlow here)."""

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and a training loop need to know about a dataset.

  Attributes:
    name: dataset name (as in the config).
    num_classes: number of labels.
    image_shape: (H, W, C) of the images the pipeline produces.
    num_train: examples in the whole training split (all hosts).
    num_eval: examples in the whole eval split (all hosts).
    mean, std: per-channel statistics of pixel values scaled to [0, 1]; a normalised image is
      `(x / 255 - mean) / std` (jaxvision.training.steps normalises raw batches on the device).
  """

  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_eval: int
  mean: tuple[float, ...]
  std: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What the input pipeline needs to know about one dataset.

  Attributes:
    name: the name used in configs.
    tfds_name: the TFDS builder name.
    train_split: TFDS split used for training.
    eval_split: TFDS split used for evaluation.
    num_classes: number of labels.
    image_shape: native (H, W, C); for `crop="inception"` the default output size.
    mean: per-channel mean of pixel values scaled to [0, 1].
    std: per-channel standard deviation of pixel values scaled to [0, 1].
    crop: training crop: "pad" (zero-pad then random crop back to size),
      "inception" (random resized crop; eval resizes and takes a centre crop)
      or "scale" (segmentation: random rescaling by `scale_range`, then a
      random crop, the same for image and mask; eval resizes).
    crop_padding: default padding for `crop="pad"`.
    flip: whether training images are randomly flipped left-right by default.
    eval_crop_fraction: `crop="inception"` only: centre crop side / shorter side
      at eval (224 / 256).
    cache: keep the decoded training split in memory (small datasets only).
    offline_build: `download_and_prepare()` needs no network, so the pipeline
      prepares the dataset itself when it is missing.
    kind: "classification" (batches hold `label`) or "segmentation" (`mask`).
    mask_key: segmentation only: the TFDS feature holding the per-pixel labels.
    mask_map: segmentation only: stored mask value v -> label mask_map[v]
      (255 = ignore); None keeps the stored values.
    scale_range: segmentation only (`crop="scale"`): the random rescaling
      factors of training images before the random crop.
  """

  name: str
  tfds_name: str
  train_split: str
  eval_split: str
  num_classes: int
  image_shape: tuple[int, int, int]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  crop: str = "pad"
  crop_padding: int = 0
  flip: bool = False
  eval_crop_fraction: float = 1.0
  cache: bool = True
  offline_build: bool = False
  kind: str = "classification"
  mask_key: str = "mask"
  mask_map: tuple[int, ...] | None = None
  scale_range: tuple[float, float] = (1.0, 1.0)


# Procedural, with thousands of examples: flips only by default (random rescaling
# blurs the shapes' edges, and slows learning several-fold in short runs).
_SHAPES = dict(train_split="train", eval_split="test", num_classes=4,
               mean=(0.504, 0.484, 0.509), std=(0.260, 0.248, 0.256),
               crop="scale", scale_range=(1.0, 1.0), flip=True,
               offline_build=True, kind="segmentation")
_IMAGENET_MEAN_STD = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

_CIFAR = dict(train_split="train", eval_split="test", image_shape=(32, 32, 3),
              crop_padding=4, flip=True)

DATASETS: dict[str, DatasetSpec] = {
    s.name: s for s in (
        DatasetSpec(
            name="digits", tfds_name="digits", train_split="train",
            eval_split="test", num_classes=10, image_shape=(8, 8, 1),
            mean=(0.3054,), std=(0.3760,), crop_padding=1, flip=False,
            offline_build=True),
        DatasetSpec(  # throughput benchmarks only (jaxvision/data/builders/noise.py)
            name="noise32", tfds_name="noise32", num_classes=10, mean=(0.5,) * 3,
            std=(0.2887,) * 3, offline_build=True, **_CIFAR),
        DatasetSpec(  # procedural CIFAR-sized stand-in (jaxvision/data/builders/clutter10.py)
            name="clutter10", tfds_name="clutter10", num_classes=10,
            mean=(0.5011, 0.5000, 0.4994), std=(0.2391, 0.2401, 0.2377),
            offline_build=True, **_CIFAR),
        DatasetSpec(
            name="mnist", tfds_name="mnist", train_split="train",
            eval_split="test", num_classes=10, image_shape=(28, 28, 1),
            mean=(0.1307,), std=(0.3081,), crop_padding=2, flip=False),
        DatasetSpec(
            name="cifar10", tfds_name="cifar10", num_classes=10,
            mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
            **_CIFAR),
        DatasetSpec(
            name="cifar100", tfds_name="cifar100", num_classes=100,
            mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
            **_CIFAR),
        DatasetSpec(
            name="imagenet2012", tfds_name="imagenet2012", train_split="train",
            eval_split="validation", num_classes=1000, image_shape=(224, 224, 3),
            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
            crop="inception", flip=True, eval_crop_fraction=224 / 256,
            cache=False),
        DatasetSpec(name="shapes", tfds_name="shapes/128",
                    image_shape=(128, 128, 3), **_SHAPES),
        DatasetSpec(name="shapes/64", tfds_name="shapes/64",
                    image_shape=(64, 64, 3), **_SHAPES),
        # Trimaps: 1 pet, 2 background, 3 border (ignored).
        DatasetSpec(
            name="oxford_iiit_pet", tfds_name="oxford_iiit_pet",
            train_split="train", eval_split="test", num_classes=2,
            image_shape=(224, 224, 3), crop="scale", scale_range=(0.5, 2.0),
            flip=True, cache=False, kind="segmentation",
            mask_key="segmentation_mask", mask_map=(255, 1, 0, 255),
            **_IMAGENET_MEAN_STD),
        # 20 classes + background; 255 marks object borders (ignored).
        DatasetSpec(
            name="voc2012_segmentation", tfds_name="voc2012_segmentation",
            train_split="train", eval_split="validation", num_classes=21,
            image_shape=(320, 320, 3), crop="scale", scale_range=(0.5, 2.0),
            flip=True, cache=False, kind="segmentation",
            mask_key="segmentation_mask", **_IMAGENET_MEAN_STD),
    )
}


def get_spec(name: str) -> DatasetSpec:
  """Returns the spec of dataset `name`; ValueError for an unknown name."""
  try:
    return DATASETS[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"dataset name: unknown dataset {name!r}; "
        f"expected one of {sorted(DATASETS)}") from None


@dataclasses.dataclass(frozen=True)
class Settings:
  """A dataset config resolved against the dataset's defaults."""

  spec: DatasetSpec
  data_dir: str | None
  image_shape: tuple[int, int, int]
  random_crop: bool
  crop_padding: int
  flip: bool
  shuffle_buffer: int


def settings(dataset_config: Any) -> Settings:
  """Validates `dataset_config` and fills in the dataset defaults."""
  spec = get_spec(dataset_config.name)
  size = dataset_config.image_size
  if not isinstance(size, int) or size < 0:
    raise ValueError("dataset_config.image_size must be an int >= 0 "
                     f"(0: native size); got {size!r}")
  padding = dataset_config.crop_padding
  if not isinstance(padding, int) or padding < -1:
    raise ValueError("dataset_config.crop_padding must be an int >= -1 "
                     f"(-1: dataset default, 0: no crop); got {padding!r}")
  if spec.crop in ("inception", "scale"):
    if padding > 0:
      raise ValueError(
          f"dataset_config.crop_padding: {spec.name} uses a random resized "
          f"crop ({spec.crop!r}), so crop_padding must be -1 (on) or 0 (off); "
          f"got {padding}")
    random_crop = padding != 0
  else:
    padding = spec.crop_padding if padding == -1 else padding
    random_crop = padding > 0
  buffer = check_shuffle_buffer(dataset_config.shuffle_buffer)
  flip = spec.flip if dataset_config.flip is None else bool(dataset_config.flip)
  height, _, channels = spec.image_shape
  side = size or height
  return Settings(spec=spec, data_dir=dataset_config.data_dir,
                  image_shape=(side, side, channels), random_crop=random_crop,
                  crop_padding=padding, flip=flip, shuffle_buffer=buffer)


def check_shuffle_buffer(buffer: Any) -> int:
  """`dataset_config.shuffle_buffer`, checked (an int >= 1)."""
  if not isinstance(buffer, int) or buffer < 1:
    raise ValueError(f"dataset_config.shuffle_buffer must be an int >= 1; got {buffer!r}")
  return buffer
