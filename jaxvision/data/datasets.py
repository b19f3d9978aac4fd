"""The image-classification datasets the pipeline knows, and their defaults."""

import dataclasses


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
    crop: training crop: "pad" (zero-pad then random crop back to size) or
      "inception" (random resized crop; eval resizes and takes a centre crop).
    crop_padding: default padding for `crop="pad"`.
    flip: whether training images are randomly flipped left-right by default.
    eval_crop_fraction: `crop="inception"` only: centre crop side / shorter side
      at eval (224 / 256).
    cache: keep the decoded training split in memory (small datasets only).
    offline_build: `download_and_prepare()` needs no network, so the pipeline
      prepares the dataset itself when it is missing.
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


_CIFAR = dict(train_split="train", eval_split="test", image_shape=(32, 32, 3),
              crop_padding=4, flip=True)

DATASETS: dict[str, DatasetSpec] = {
    s.name: s for s in (
        DatasetSpec(
            name="digits", tfds_name="digits", train_split="train",
            eval_split="test", num_classes=10, image_shape=(8, 8, 1),
            mean=(0.3054,), std=(0.3760,), crop_padding=1, flip=False,
            offline_build=True),
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
