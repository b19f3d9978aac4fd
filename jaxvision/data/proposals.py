"""Selective Search proposals of a whole detection split, in memory, cached beside the TFDS data.

`split_proposals` reads the split through `jaxvision.data.detection` (its original images, no
resizing or augmentation), runs `jaxvision.ops.selective_search.proposals_for_images` once and
keeps the result as `proposals-<dataset>-<split>-k<max_boxes>-ss<VERSION>.npz` in the TFDS
dataset's folder; later calls load it. The cache holds the proposals only (compactly, without
the padding) and a checksum of the images, so a rebuilt dataset is noticed and recomputed.
`limit=N` asks for the first N images only: from the cache where it is valid, else computed for
those N alone (and not cached), so that a short run (a notebook's) never waits for a whole split.
"""

from __future__ import annotations

# Side effects first: no network for TFDS, quiet CPU-only TensorFlow.
from jaxvision.data import tfds_offline  # noqa: F401  isort: skip

import logging
import numbers
import os
import pathlib
import time
import zlib

import numpy as np
import tensorflow_datasets as tfds

from jaxvision.data import detection
from jaxvision.ops import boxes as box_ops
from jaxvision.ops.selective_search import VERSION, check_max_boxes, proposals_for_images

_log = logging.getLogger(__name__)


def _sources(spec: detection.DetectionSpec, split: str) -> tuple[tuple[str, str], ...]:
  if split == "train":
    return spec.train
  if split == spec.eval[1]:
    return (spec.eval,)
  raise ValueError(f"split: {spec.name} has the splits 'train' and {spec.eval[1]!r}; got "
                   f"{split!r}")


def _examples(spec: detection.DetectionSpec, sources, data_dir, limit: int = 0) -> dict:
  """The split's original images and padded ground truth (pixel xyxy); its first `limit`
  examples (0: all)."""
  s = detection.Settings(
      spec=spec, data_dir=data_dir, size=spec.image_size, random_crop=False, flip=False,
      shuffle_buffer=1, max_boxes=spec.max_boxes, drop_extra_boxes=False)
  ds = detection.read(sources, s, shard=False)
  if limit > 0:
    ds = ds.take(limit)
  images, yxyx, classes, difficult = [], [], [], []
  for ex in tfds.as_numpy(ds):
    images.append(ex["image"])
    yxyx.append(ex["boxes"])
    classes.append(ex["classes"])
    difficult.append(ex["difficult"])
  if not images:
    raise ValueError(f"split: {spec.name} {sources} has no examples")
  shapes = {im.shape for im in images}
  if len(shapes) != 1:
    raise ValueError(f"dataset_name: the in-memory form needs images of one size; {spec.name} "
                     f"has {len(shapes)} sizes, e.g. {sorted(shapes)[:3]}")
  n, g = len(images), spec.max_boxes
  padded = np.zeros((n, g, 4), np.float32)
  out = {"images": np.stack(images), "classes": np.zeros((n, g), np.int32),
         "gt_valid": np.zeros((n, g), bool), "difficult": np.zeros((n, g), bool)}
  for i, (b, c, d) in enumerate(zip(yxyx, classes, difficult)):
    padded[i, :len(b)] = b
    out["classes"][i, :len(c)] = c
    out["gt_valid"][i, :len(c)] = True
    out["difficult"][i, :len(d)] = d
  height, width = images[0].shape[:2]
  out["boxes"] = np.asarray(box_ops.yxyx_to_xyxy(padded, height, width), np.float32)
  return out


def _first(data: dict, limit: int) -> dict:
  """The first `limit` (0: all) rows of every array of `data`."""
  if not limit:
    return data
  return {k: v[:limit] if isinstance(v, np.ndarray) else v for k, v in data.items()}


def normalise(images, dataset_name: str) -> np.ndarray:
  """uint8 images [N, H, W, C] (as `split_proposals` returns them) normalised with the dataset's
  statistics, as the detection pipeline feeds them to the network: float32."""
  spec = detection.get_spec(dataset_name)
  return ((np.asarray(images).astype(np.float32) / 255.0 - np.asarray(spec.mean, np.float32))
          / np.asarray(spec.std, np.float32))


def cache_path(dataset_name: str, split: str, max_boxes: int, data_dir=None) -> pathlib.Path:
  """Where `split_proposals` keeps the proposals: the TFDS folder of the split's first source."""
  spec = detection.get_spec(dataset_name)
  name = _sources(spec, split)[0][0]
  folder = pathlib.Path(tfds.builder(name, data_dir=data_dir).data_dir)
  tag = dataset_name.replace("/", "_")
  return folder / f"proposals-{tag}-{split}-k{max_boxes}-ss{VERSION}.npz"


def split_proposals(dataset_name: str = "shapes_detection/64", split: str = "test",
                    max_boxes: int = 2000, data_dir=None, *, processes: int | None = None,
                    recompute: bool = False, limit: int = 0) -> dict:
  """A detection split with its Selective Search proposals, all in memory.

  Args:
    dataset_name: a `jaxvision.data.detection` dataset whose images share one size.
    split: "train" or the dataset's evaluation split ("test" for shapes).
    max_boxes: K, proposals kept per image.
    data_dir: TFDS data_dir (None: TFDS's default).
    processes: worker processes for computing the proposals (None: this process).
    recompute: compute them again even when cached (and rewrite the cache).
    limit: the first `limit` images of the split only (0: all). They come from the cache when
      it holds the whole split's (its checksum is checked on all the images); otherwise only
      theirs are computed, and nothing is cached.

  Returns:
    dict of numpy arrays: `images` uint8 [N, H, W, 3]; ground truth `boxes` float32 [N, G, 4]
    (pixel xyxy, zero-padded), `classes` int32 [N, G], `gt_valid` bool [N, G], `difficult`
    bool [N, G]; `proposals` float32 [N, K, 4] (pixel xyxy, ranked, zero-padded),
    `proposal_valid` bool [N, K]; `seconds_per_image`, the wall time per image the proposals
    took when they were computed (on whatever machine made the cache); `from_cache`.
  """
  max_boxes = check_max_boxes(max_boxes)  # before reading
  if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0:
    raise ValueError(f"limit: expected an int >= 0 (0: all images), got {limit!r}")
  spec = detection.get_spec(dataset_name)
  sources = _sources(spec, split)
  path = cache_path(dataset_name, split, max_boxes, data_dir)
  use_cache = path.exists() and not recompute
  data = _examples(spec, sources, data_dir, 0 if use_cache else limit)
  checksum = zlib.crc32(data["images"].tobytes())
  n = len(data["images"])
  if use_cache:
    with np.load(path) as cached:
      if int(cached["images_crc32"]) == checksum and len(cached["counts"]) == n:
        counts = cached["counts"]
        data["proposal_valid"] = np.arange(max_boxes) < counts[:, None]
        data["proposals"] = np.zeros((n, max_boxes, 4), np.float32)
        data["proposals"][data["proposal_valid"]] = cached["boxes"]
        data["seconds_per_image"] = float(cached["seconds_per_image"])
        data["from_cache"] = True
        return _first(data, limit)
    _log.warning("%s: the images changed since the proposals were cached; recomputing", path)
    data = _first(data, limit)
    n = len(data["images"])
  start = time.perf_counter()
  proposals, valid = proposals_for_images(data["images"], max_boxes=max_boxes,
                                          processes=processes)
  seconds = (time.perf_counter() - start) / n
  if limit:  # a part of the split: the cache holds whole splits only
    return {**data, "proposals": proposals, "proposal_valid": valid,
            "seconds_per_image": seconds, "from_cache": False}
  tmp = path.with_name(path.name + f".tmp{os.getpid()}")
  with open(tmp, "wb") as f:
    np.savez(f, boxes=proposals[valid], counts=valid.sum(axis=1), images_crc32=checksum,
             seconds_per_image=seconds)
  os.replace(tmp, path)
  return {**data, "proposals": proposals, "proposal_valid": valid, "seconds_per_image": seconds,
          "from_cache": False}
