"""Semantic segmentation three ways on `shapes/64`, the lecture's two claims measured.

  python -m jaxvision.analysis.segmentation_three_ways --workdir runs/segmentation_three_ways

1. **Sliding window** (Farabet et al. 2013): a patch classifier (`window_cnn`, unpadded) labels
   the centre pixel of a `patch` x `patch` crop; at test time every pixel's crop is classified on
   its own ("VERY inefficient, no reuse of computation").
2. **A fully convolutional network at full resolution** (`full_resolution_fcn`): 3x3 layers that
   never downsample ("very expensive").
3. **Downsample, then upsample**: FCN-8s and U-Net (`fcn_shapes`, `unet_shapes`).

Per way: mIoU and pixel accuracy on the test split (one confusion matrix over it), forward GFLOPs
per 64x64 image (XLA's count; the sliding window: one crop's times the pixels), training time
and test time per image (median of jitted batches after a warm-up). Writes WORKDIR/results.json
and WORKDIR/results.md (with versions, git revision and settings). TensorFlow is needed only to
read the data; the FCN ways train through `fit` in WORKDIR/runs/NAME (resumed if present).
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvision.analysis.complexity import forward_cost, median_seconds
from jaxvision.analysis.provenance import config_block, provenance, versions_line
from jaxvision.analysis.sliding_window_shapes import train_crop_classifier
from jaxvision.losses.segmentation import IGNORE_LABEL
from jaxvision.metrics.segmentation import confusion_matrix, segmentation_scores
from jaxvision.models import create_model

DATASET = "shapes/64"
NUM_CLASSES = 4  # background, circle, square, triangle


def load_split(split: str, limit: int | None = None, data_dir: str | None = None) -> dict:
  """{"image" float32 [N, H, W, C] (normalised), "mask" int32 [N, H, W]} of `shapes/64`'s
  `split` ("train": its first epoch's order, unaugmented; "test"), `limit` examples at most."""
  from jaxvision.data import pipeline  # TensorFlow only here
  from jaxvision.data.config import default_dataset_config

  if split not in ("train", "test"):
    raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
  c = default_dataset_config()
  c.name, c.data_dir, c.crop_padding, c.flip = DATASET, data_dir, 0, False
  info = pipeline.dataset_info(c)
  total = info.num_train if split == "train" else info.num_eval
  total = total if limit is None else min(total, limit)
  batches = (pipeline.train_batches(c, 100, seed=0) if split == "train"
             else pipeline.eval_batches(c, 100))
  images, masks = [], []
  while sum(len(m) for m in masks) < total:
    b = next(batches)
    keep = b["weight"] > 0 if "weight" in b else np.ones(len(b["image"]), bool)
    images.append(b["image"][keep])
    masks.append(b["mask"][keep])
  return {"image": np.concatenate(images)[:total], "mask": np.concatenate(masks)[:total]}


def padded(images: np.ndarray, patch: int) -> np.ndarray:
  """`images` [N, H, W, C] zero-padded (the mean colour, once normalised) by patch // 2."""
  r = patch // 2
  return np.pad(images, ((0, 0), (r, patch - 1 - r), (r, patch - 1 - r), (0, 0)))


def sample_patches(images: np.ndarray, masks: np.ndarray, count: int, patch: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """`count` crops [count, patch, patch, C] centred on pixels (half on objects, half on the
  background, so that the small classes are seen) and their centre labels."""
  valid = masks != IGNORE_LABEL
  where = {False: np.argwhere(valid & (masks == 0)), True: np.argwhere(valid & (masks > 0))}
  half = count // 2
  picks = np.concatenate([where[True][rng.integers(0, len(where[True]), count - half)],
                          where[False][rng.integers(0, len(where[False]), half)]])
  big = padded(images, patch)
  crops = np.stack([big[n, i:i + patch, j:j + patch] for n, i, j in picks])
  return crops, masks[picks[:, 0], picks[:, 1], picks[:, 2]].astype(np.int32)


def pixel_patches(image: np.ndarray, patch: int) -> np.ndarray:
  """Every pixel's crop of one `image` [H, W, C]: [H * W, patch, patch, C] (a view, row-major)."""
  windows = np.lib.stride_tricks.sliding_window_view(padded(image[None], patch)[0],
                                                     (patch, patch), axis=(0, 1))
  h, w, c = image.shape
  return windows.transpose(0, 1, 3, 4, 2).reshape(h * w, patch, patch, c)


def segment_by_patches(classify, image: np.ndarray, patch: int, chunk: int = 1024) -> np.ndarray:
  """Labels [H, W] of `image`: each pixel's crop classified on its own, `chunk` crops per call."""
  crops = pixel_patches(image, patch)
  labels = [np.asarray(jnp.argmax(classify(jnp.asarray(crops[i:i + chunk])), -1))
            for i in range(0, len(crops), chunk)]
  return np.concatenate(labels).reshape(image.shape[:2])


def scores(masks: np.ndarray, predictions: np.ndarray) -> dict:
  """mIoU and pixel accuracy of `predictions` against `masks` over the whole split."""
  cm = np.asarray(confusion_matrix(jnp.asarray(masks), jnp.asarray(predictions), NUM_CLASSES))
  s = segmentation_scores(cm)
  return {"miou": float(s["miou"]), "pixel_accuracy": float(s["pixel_accuracy"])}


def sliding_window_way(train: dict, test: dict, *, patch: int, widths, steps: int,
                       train_patches: int, seed: int, timed_images: int) -> dict:
  """Trains the patch classifier and segments every test image pixel by pixel."""
  model = create_model("window_cnn", num_classes=NUM_CLASSES, widths=tuple(widths))
  crops, labels = sample_patches(train["image"], train["mask"], train_patches, patch,
                                 np.random.default_rng(seed))
  start = time.perf_counter()
  variables, log = train_crop_classifier(model, crops, labels, steps=steps, seed=seed)
  train_s = time.perf_counter() - start
  classify = jax.jit(lambda x: model.apply(variables, x, train=False))
  predictions = np.stack([segment_by_patches(classify, im, patch) for im in test["image"]])
  n = min(timed_images, len(test["image"]))
  per_image = median_seconds(lambda: [segment_by_patches(classify, im, patch)
                                       for im in test["image"][:n]]) / n
  h, w = test["image"].shape[1:3]
  crop_gflops = forward_cost("window_cnn", size=patch, num_classes=NUM_CLASSES,
                             widths=tuple(widths))["forward_gflops"]
  return {"way": "sliding window (patch classifier per pixel)", "model": "window_cnn",
          "options": {"patch": patch, "widths": list(widths), "steps": steps,
                      "train_patches": train_patches},
          **scores(test["mask"], predictions), "gflops_per_image": crop_gflops * h * w,
          "train_s": train_s, "test_ms_per_image": 1e3 * per_image, "train_log": log}


def fcn_way(way: str, config, workdir: pathlib.Path, test: dict, *, timed_images: int) -> dict:
  """Trains `config` through `fit` in `workdir` (resumed, or reused where it finished) and times
  its forward pass; the training time is the run's (`fit`'s summary `seconds`)."""
  from jaxvision.analysis.visualize import load_run
  from jaxvision.training.fit import fit

  summary = fit(config, workdir, progress=False)
  _, model, variables, _ = load_run(workdir)
  images = jnp.asarray(test["image"][:timed_images])
  predict = jax.jit(lambda x: jnp.argmax(model.apply(variables, x, train=False), -1))
  per_image = median_seconds(lambda: predict(images)) / len(images)
  options = dict(config.model.options)
  size = test["image"].shape[1]
  return {"way": way, "model": config.model.name, "options": options,
          "miou": float(summary["eval"]["miou"]),
          "pixel_accuracy": float(summary["eval"]["accuracy"]),
          "gflops_per_image": forward_cost(config.model.name, size=size, num_classes=NUM_CLASSES,
                                           **options)["forward_gflops"],
          "train_s": summary["seconds"],
          "test_ms_per_image": 1e3 * per_image}


def markdown(rows: list[dict], meta: dict) -> str:
  lines = [f"# Segmentation three ways on {DATASET}\n",
           f"Device: {meta['device']}; {versions_line(meta)}.\n",
           "| way | model | mIoU | pixel accuracy | forward GFLOPs / image | train | test / image |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['way']} | {r['model']} | {r['miou']:.3f} | {r['pixel_accuracy']:.3f} | "
                 f"{r['gflops_per_image']:.2f} | {r['train_s']:.0f} s | "
                 f"{r['test_ms_per_image']:.1f} ms |")
  return "\n".join(lines) + "\n"


def full_resolution_config(width: int, depth: int, epochs: float):
  """The full-resolution FCN's training config: fcn_shapes's data and optimiser."""
  from jaxvision.configs.fcn_shapes import get_config

  c = get_config()
  c.model.name = "full_resolution_fcn"
  c.model.options = dict(width=width, depth=depth)
  c.num_epochs = epochs
  c.plot = False
  return c


def run(workdir: str, *, train_images: int = 2000, test_images: int = 500, patch: int = 21,
        widths=(16, 32, 64), steps: int = 2000, train_patches: int = 100_000,
        full_width: int = 32, full_depths=(8, 10), full_epochs: float = 2.0,
        ways=("sliding", "full", "fcn8s", "unet"), timed_images: int = 20, seed: int = 0,
        data_dir: str | None = None) -> list[dict]:
  """Runs the chosen `ways` (the full-resolution FCN once per entry of `full_depths`), writes
  WORKDIR/results.json and results.md; returns the rows."""
  import importlib

  unknown = sorted(set(ways) - {"sliding", "full", "fcn8s", "unet"})
  if unknown:
    raise ValueError(f"ways: expected some of sliding, full, fcn8s, unet, got {unknown}")
  out = pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  test = load_split("test", test_images, data_dir)
  rows = []
  if "sliding" in ways:
    train = load_split("train", train_images, data_dir)
    rows.append(sliding_window_way(train, test, patch=patch, widths=widths, steps=steps,
                                   train_patches=train_patches, seed=seed,
                                   timed_images=timed_images))
  configs = {}
  if "full" in ways:
    for depth in full_depths:
      configs[f"full_depth{depth:02d}"] = (
          f"FCN at full resolution (no downsampling), receptive field {2 * depth + 1}",
          full_resolution_config(full_width, depth, full_epochs))
  for name, way in (("fcn8s", "FCN-8s (downsample, upsample)"),
                    ("unet", "U-Net (downsample, upsample, skips)")):
    if name in ways:
      c = importlib.import_module(f"jaxvision.configs.{name.replace('fcn8s', 'fcn')}_shapes")
      configs[name] = (way, c.get_config())
  for name, (way, c) in configs.items():
    c.dataset.data_dir, c.plot, c.eval_batch_size = data_dir, False, 100
    rows.append(fcn_way(way, c, out / "runs" / name, test, timed_images=timed_images))
  settings = ml_collections.ConfigDict(dict(
      train_images=train_images, test_images=test_images, patch=patch, widths=list(widths),
      steps=steps, train_patches=train_patches, full_width=full_width,
      full_depths=list(full_depths), full_epochs=full_epochs, ways=list(ways), seed=seed))
  meta = provenance(settings)
  (out / "results.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=1,
                                               default=str))
  (out / "results.md").write_text(markdown(rows, meta) + "\n" + config_block(meta))
  return rows


def main(argv) -> None:
  del argv
  from absl import flags
  f = flags.FLAGS
  rows = run(f.workdir, train_images=f.train_images, test_images=f.test_images,
             steps=f.steps, full_width=f.full_width,
             full_depths=tuple(int(d) for d in f.full_depths), full_epochs=f.full_epochs,
             ways=tuple(f.ways))
  print(markdown(rows, provenance(ml_collections.ConfigDict())))


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_string("workdir", "runs/segmentation_three_ways", "Where the results go.")
  flags.DEFINE_integer("train_images", 2000, "Training images the patches come from.")
  flags.DEFINE_integer("test_images", 500, "Test images evaluated.")
  flags.DEFINE_integer("steps", 2000, "Patch classifier training steps (batch 128).")
  flags.DEFINE_integer("full_width", 32, "Channels of the full-resolution FCN's layers.")
  flags.DEFINE_list("full_depths", ["8", "10"], "3x3 layers of each full-resolution FCN "
                    "(receptive field 2 * depth + 1; 10: 21 pixels, the sliding window's patch).")
  flags.DEFINE_float("full_epochs", 2.0, "Epochs of the full-resolution FCN.")
  flags.DEFINE_list("ways", ["sliding", "full", "fcn8s", "unet"], "Which ways to run.")
  app.run(main)
