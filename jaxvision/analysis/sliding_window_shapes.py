"""Sliding-window detection on `shapes` (64x64): a crop classifier trained in memory, run over
every window both ways, VOC mAP@0.5 on the test split.

  python -m jaxvision.analysis.sliding_window_shapes --workdir runs/sliding_window_shapes

Crops (3 per object, IoU >= 0.5 with it; 8 background windows per image, IoU < 0.3 with every
object) of the first `--train_images` training images train a `window_cnn` (background + 3
classes) with AdamW for `--steps` steps (left-right flips). Detection slides square windows of
`--window_sizes` pixels at `--stride` (classifier-input pixels) and merges them with per-class
NMS; it runs the fully convolutional way on every test image and, on the first
`--check_images`, also the crop loop, reporting the largest difference of their logits and each
way's time per image. Writes WORKDIR/results.json; TensorFlow is only needed to read the data.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision.metrics.voc import VOCEvaluator
from jaxvision.models import create_model
from jaxvision.models.sliding_window import SlidingWindowDetector
from jaxvision.training.steps import make_train_step
from jaxvision.training.tasks import Classification
from jaxvision.training.train_state import create_train_state

NUM_CLASSES = 3  # circle, square, triangle (+ background)


def train_crop_classifier(model, crops: np.ndarray, labels: np.ndarray, *, steps: int,
                          batch_size: int = 128, learning_rate: float = 3e-3,
                          weight_decay: float = 5e-4, seed: int = 0, log_every: int = 250):
  """Trains `model` on `crops` [M, n, n, C] with `labels` [M] in memory; returns
  (variables, log) with log a list of (step, loss, accuracy) means since the previous entry."""
  if crops.ndim != 4 or labels.shape != crops.shape[:1]:
    raise ValueError(f"crops, labels: expected [M, n, n, C] and [M], got shapes {crops.shape} "
                     f"and {labels.shape}")
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(100, steps // 10 + 1),
                                                steps)
  tx = optax.adamw(schedule, weight_decay=weight_decay)
  state = create_train_state(model, tx, jax.random.key(seed), crops.shape[1:])
  step = jax.jit(make_train_step(Classification()), donate_argnums=0)
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed + 1)
  log, acc = [], []
  for i in range(1, steps + 1):
    idx = rng.integers(0, len(crops), batch_size)
    x = crops[idx]
    flip = rng.random(batch_size) < 0.5
    x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    state, metrics = step(state, {"image": jnp.asarray(x), "label": jnp.asarray(labels[idx])}, key)
    acc.append(metrics)
    if i % log_every == 0 or i == steps:
      mean = {k: float(np.mean([float(m[k]) for m in acc])) for k in ("loss", "accuracy")}
      log.append((i, mean["loss"], mean["accuracy"]))
      acc = []
  return {"params": state.params, "batch_stats": state.batch_stats}, log


def evaluate(detector: SlidingWindowDetector, data: dict, window_sizes: Sequence[float],
             stride: int, way: str = "fcn", **detect_options) -> dict:
  """VOC AP (IoU 0.5, no +1 pixel) of the detector over `data` (`crops.load_split`), and the
  median seconds per image (after a first, compiling, image)."""
  evaluator = VOCEvaluator(NUM_CLASSES, iou_threshold=0.5, plus_one=False)
  times = []
  for i in range(len(data["image"])):
    start = time.perf_counter()
    boxes, scores, classes, valid = jax.block_until_ready(detector.detect(
        data["image"][i], window_sizes, stride, way=way, **detect_options))
    times.append(time.perf_counter() - start)
    v, g = np.asarray(valid), data["valid"][i]
    evaluator.add(np.asarray(boxes)[v], np.asarray(scores)[v], np.asarray(classes)[v],
                  data["boxes"][i][g], data["classes"][i][g])
  result = evaluator.result()
  return {"map_voc07": result["map_voc07"], "map_voc12": result["map_voc12"],
          "ap_voc12": [float(a) for a in result["ap_voc12"]],
          "seconds_per_image": statistics.median(times[1:] or times)}


def run(workdir: str, *, train_images: int = 2000, test_images: int = 500, steps: int = 2000,
        input_size: int = 22, widths: Sequence[int] = (16, 32, 64),
        window_sizes: Sequence[float] = (12, 15, 19, 24, 30), stride: int = 2,
        other_strides: Sequence[int] = (4, 1), check_images: int = 20, seed: int = 0) -> dict:
  """Trains, evaluates and writes WORKDIR/results.json (see the module doc); returns it."""
  from jaxvision.data import crops as crop_data  # TensorFlow: only to read the data
  train = crop_data.load_split(split="train", limit=train_images)
  test = crop_data.load_split(split="test", limit=test_images)
  size = train["image"].shape[1:3]
  rng = np.random.default_rng(seed)
  index, boxes, labels = crop_data.sample_windows(
      train["boxes"], train["classes"], train["valid"], size, rng,
      window_range=(min(window_sizes), max(window_sizes)))
  crops = crop_data.extract_crops(train["image"], index, boxes, input_size)
  model = create_model("window_cnn", num_classes=NUM_CLASSES + 1, widths=tuple(widths))
  start = time.perf_counter()
  variables, log = train_crop_classifier(model, crops, labels, steps=steps, seed=seed)
  train_seconds = time.perf_counter() - start
  # Held-out crops of the test images.
  t_index, t_boxes, t_labels = crop_data.sample_windows(
      test["boxes"], test["classes"], test["valid"], size, np.random.default_rng(seed + 1),
      window_range=(min(window_sizes), max(window_sizes)))
  t_crops = crop_data.extract_crops(test["image"], t_index, t_boxes, input_size)
  logits = jax.jit(lambda x: model.apply(variables, x, train=False))(jnp.asarray(t_crops))
  crop_accuracy = float(np.mean(np.argmax(logits, -1) == t_labels))

  detector = SlidingWindowDetector(model, variables, input_size)
  scales = detector.scales(size, window_sizes, stride)
  fcn = evaluate(detector, test, window_sizes, stride, "fcn")
  by_stride = {}
  for other in other_strides:
    r = evaluate(detector, test, window_sizes, other, "fcn")
    k = sum(np.prod(s.grid) for s in detector.scales(size, window_sizes, other))
    by_stride[other] = {"windows_per_image": int(k), **r}
  subset = {k: v[:check_images] for k, v in test.items()}
  crop = evaluate(detector, subset, window_sizes, stride, "crop")
  fcn_subset = evaluate(detector, subset, window_sizes, stride, "fcn")
  diffs = [float(jnp.max(jnp.abs(detector.logits(im, scales, "crop") -
                                 detector.logits(im, scales, "fcn"))))
           for im in subset["image"]]
  result = {
      "command": f"python -m jaxvision.analysis.sliding_window_shapes --workdir {workdir}",
      "train_images": len(train["image"]), "test_images": len(test["image"]),
      "train_crops": int(len(labels)), "crop_label_counts": np.bincount(labels).tolist(),
      "steps": steps, "train_seconds": train_seconds, "train_log": log,
      "test_crop_accuracy": crop_accuracy, "input_size": input_size, "widths": list(widths),
      "window_sizes": list(window_sizes), "stride": stride, "net_stride": detector.net_stride,
      "windows_per_image": int(sum(np.prod(s.grid) for s in scales)),
      "fcn": fcn, "fcn_other_strides": by_stride, "crop_on_subset": crop,
      "fcn_on_subset": fcn_subset,
      "check_images": len(subset["image"]), "max_logit_difference_crop_vs_fcn": max(diffs),
  }
  out = pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.json").write_text(json.dumps(result, indent=1))
  return result


def main(argv):
  del argv
  from absl import flags
  f = flags.FLAGS
  r = run(f.workdir, train_images=f.train_images, test_images=f.test_images, steps=f.steps,
          window_sizes=[float(w) for w in f.window_sizes], stride=f.stride,
          other_strides=[int(v) for v in f.other_strides])
  print(f"crop classifier: {r['train_crops']} crops, {r['steps']} steps in "
        f"{r['train_seconds']:.0f} s, test-crop accuracy {r['test_crop_accuracy']:.3f}")
  print(f"{r['windows_per_image']} windows per image; VOC mAP@0.5 on {r['test_images']} test "
        f"images: {r['fcn']['map_voc12']:.3f} (all-point), {r['fcn']['map_voc07']:.3f} (11-point)")
  for other, o in r["fcn_other_strides"].items():
    print(f"  stride {other}: {o['windows_per_image']} windows per image, mAP "
          f"{o['map_voc12']:.3f} (all-point), {o['map_voc07']:.3f} (11-point)")
  crop_ms = r["crop_on_subset"]["seconds_per_image"] * 1e3
  fcn_ms = r["fcn_on_subset"]["seconds_per_image"] * 1e3
  print(f"first {r['check_images']} test images: crop loop {crop_ms:.1f} ms/image, fully "
        f"convolutional {fcn_ms:.1f} ms/image, max |logit difference| "
        f"{r['max_logit_difference_crop_vs_fcn']:.2e}")


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_string("workdir", "runs/sliding_window_shapes", "Where results.json goes.")
  flags.DEFINE_integer("train_images", 2000, "Training images the crops come from.")
  flags.DEFINE_integer("test_images", 500, "Test images evaluated.")
  flags.DEFINE_integer("steps", 2000, "Training steps (batch 128).")
  flags.DEFINE_list("window_sizes", ["12", "15", "19", "24", "30"], "Window sides, pixels.")
  flags.DEFINE_integer("stride", 2, "Window stride in classifier-input pixels.")
  flags.DEFINE_list("other_strides", ["4", "1"], "Strides also evaluated (fully convolutional).")
  app.run(main)
