"""LSDA on `shapes`: detect classes that have image-level labels only, by transferring how a
classifier became a detector for the classes that have boxes (Hoffman et al. 2014).

  python -m jaxvision.analysis.lsda [--boxed circle,square] [--label_only triangle] [--k 1]

1. Classifier: the multi-label network of train/configs/multilabel_shapes.py trained on all
   classes' image-level labels (`--classifier` workdir; trained there first if it holds no
   checkpoint).
2. Adaptation (R-CNN fine-tuning): a copy of it with a (boxed classes + background) output
   layer, initialised from the classifier's columns, fine-tuned on warped region crops
   (`roi_align` to `--crop` pixels, aligned, one sample per bin) labelled by IoU with the boxed
   classes' ground truth (>= 0.5: that class, else background). It trains on the images without
   any label-only object, so no unlabelled object is ever taught as background. Training regions
   are, as in R-CNN, the training split's Selective Search proposals plus its ground-truth
   boxes (`--train_regions selective_search`, cached by jaxvision.data.proposals: about 6
   minutes on 2 CPU cores the first time), or ground-truth boxes jittered in position and size
   plus uniform random boxes (`jittered`); 1/4 of each batch are objects, as in R-CNN.
3. Transfer (jaxvision.models.lsda.transfer): each label-only class's output weights = its
   classifier weights + the mean detector-minus-classifier offset of its k nearest boxed classes.
4. Evaluation on the test split's Selective Search proposals (jaxvision.data.proposals): every
   proposal warped as in training and scored; per class, NMS at IoU 0.3 and VOC AP at IoU 0.5
   (jaxvision.metrics.voc). Rows:
   - classifier: the plain classifier's sigmoid score of each warped region;
   - adapted, no transfer: the adapted layers with the classifier's label-only weights;
   - LSDA (k=...): the adapted layers with the transferred weights;
   - upper bound: the same fine-tuning with every class's boxes, on all training images.
   Detectors score a region by their softmax over classes + background (`--score logit`: the
   raw output). A table (AP of each label-only class, their mean, and the boxed classes' mean)
   is printed and written to `--out` (table.md, results.json).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision.metrics.voc import VOCEvaluator
from jaxvision.models import create_model
from jaxvision.models.lsda import check_split, head_vectors, nearest_boxed, split_head, transfer
from jaxvision.ops import clip_xyxy, nms, roi_align
from jaxvision.training.train_state import TrainState

DATASET = "shapes_detection/64"
CONFIG = "train.configs.multilabel_shapes"  # run from the repository root


# ---- regions -------------------------------------------------------------------------------

def training_regions(gt_boxes, gt_valid, image_size: int, *, jittered: int = 32,
                     uniform: int = 32, seed: int = 0) -> np.ndarray:
  """Candidate regions [N, jittered + uniform, 4] (pixel xyxy inside the image) per image:
  valid ground-truth boxes shifted by up to 30% and rescaled by e^U(-0.4, 0.4) per side, and
  uniform boxes with sides in [image/8, image*5/8]. An image without objects gets uniform boxes
  only (its jittered slots too)."""
  rng = np.random.default_rng(seed)
  n = len(gt_boxes)
  pick = np.zeros((n, jittered), int)
  has = gt_valid.any(axis=1)
  for i in np.flatnonzero(has):
    pick[i] = rng.choice(np.flatnonzero(gt_valid[i]), jittered)
  base = np.take_along_axis(gt_boxes, pick[..., None], axis=1)
  wh = base[..., 2:] - base[..., :2]
  centre = (base[..., :2] + base[..., 2:]) / 2 + wh * rng.uniform(-0.3, 0.3, wh.shape)
  wh = wh * np.exp(rng.uniform(-0.4, 0.4, wh.shape))
  jitter = np.concatenate([centre - wh / 2, centre + wh / 2], axis=-1)
  side = rng.uniform(image_size / 8, image_size * 5 / 8, (n, jittered + uniform, 2))
  corner = rng.uniform(0, 1, side.shape) * (image_size - side)
  random_boxes = np.concatenate([corner, corner + side], axis=-1)
  jitter = np.where(has[:, None, None], jitter, random_boxes[:, :jittered])
  regions = np.concatenate([jitter, random_boxes[:, jittered:]], axis=1)
  regions = np.asarray(clip_xyxy(regions, image_size, image_size), np.float32)
  tiny = np.minimum(regions[..., 2] - regions[..., 0], regions[..., 3] - regions[..., 1]) < 2
  return np.where(tiny[..., None], random_boxes, regions).astype(np.float32)


def proposal_regions(data: dict) -> tuple[np.ndarray, np.ndarray]:
  """R-CNN's training regions from `jaxvision.data.proposals.split_proposals` output: each
  image's ground-truth boxes, then its Selective Search proposals: (boxes [N, G + K, 4],
  valid [N, G + K])."""
  regions = np.concatenate([data["boxes"], data["proposals"]], axis=1).astype(np.float32)
  return regions, np.concatenate([data["gt_valid"], data["proposal_valid"]], axis=1)


def sample_batch(rng, regions, labels, batch_images: int, per_image: int,
                 object_fraction: float = 0.25):
  """Picks `batch_images` images and `per_image` of their regions each, objects (label > 0)
  with total probability `object_fraction` where the image has any, never a region labelled
  -1 (padding): (image index [B], regions [B, R, 4], labels [B, R])."""
  images = rng.choice(len(regions), batch_images, replace=False)
  picked = []
  for i in images:
    obj, bg = labels[i] > 0, labels[i] == 0
    n_obj, n_bg = obj.sum(), bg.sum()
    if n_obj and n_bg:
      p = np.where(obj, object_fraction / n_obj, np.where(bg, (1 - object_fraction) / n_bg, 0.0))
    else:
      p = (obj | bg) / (n_obj + n_bg)
    picked.append(rng.choice(len(obj), per_image, p=p))
  picked = np.stack(picked)
  return (images, np.take_along_axis(regions[images], picked[..., None], axis=1),
          np.take_along_axis(labels[images], picked, axis=1))


def warp(images, boxes, size: int):
  """Regions `boxes` [B, R, 4] of `images` [B, H, W, C] warped to [B * R, size, size, C]."""
  crops = roi_align(images, boxes, size, spatial_scale=1.0, sampling_ratio=1, aligned=True)
  return crops.reshape(-1, size, size, images.shape[-1])


# ---- models --------------------------------------------------------------------------------

def with_head(variables: dict, kernel, bias) -> dict:
  """`variables` with the output layer `fc` replaced."""
  params = dict(variables["params"])
  params["fc"] = {"kernel": jnp.asarray(kernel, jnp.float32),
                  "bias": jnp.asarray(bias, jnp.float32)}
  return {"params": params, "batch_stats": variables["batch_stats"]}


def fc_vectors(variables: dict) -> np.ndarray:
  fc = variables["params"]["fc"]
  return head_vectors(np.asarray(fc["kernel"]), np.asarray(fc["bias"]))


def detector_init(classifier: dict, classes) -> dict:
  """The classifier with output columns `classes` (in order) and a zero background column."""
  c = fc_vectors(classifier)[:, list(classes)]
  kernel, bias = split_head(np.concatenate([c, np.zeros((c.shape[0], 1))], axis=1))
  return with_head(classifier, kernel, bias)


def finetune_detector(model, variables: dict, images, regions, labels, *, steps: int,
                      crop: int, batch_images: int, per_image: int, learning_rate: float,
                      seed: int) -> dict:
  """Fine-tunes `model` (outputs: classes + background) with softmax cross-entropy on warped
  regions; `labels` [N, M] are class + 1 or 0 (background, the last output)."""
  tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, steps), weight_decay=1e-4)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                            batch_stats=variables["batch_stats"], tx=tx)
  num_outputs = variables["params"]["fc"]["bias"].shape[0]

  @functools.partial(jax.jit, donate_argnums=0)
  def step(state, images, boxes, targets):
    x = warp(images, boxes, crop)

    def loss_fn(params):
      logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, x,
                                       train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets.reshape(-1)).mean()
      return loss, updates["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, batch_stats=stats), loss

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    idx, boxes, y = sample_batch(rng, regions, labels, batch_images, per_image)
    y = np.where(y > 0, y - 1, num_outputs - 1).astype(np.int32)
    state, loss = step(state, jnp.asarray(images[idx]), jnp.asarray(boxes), jnp.asarray(y))
  return {"params": state.params, "batch_stats": state.batch_stats}


def region_features(model, variables, images, proposals, valid, crop: int,
                    chunk: int = 512) -> np.ndarray:
  """Pooled last-stage features [N, P, D] of every valid proposal's warped crop (zero
  elsewhere), computed over the valid proposals of all images in fixed chunks (one compilation)."""
  @jax.jit
  def features(v, im, boxes):
    maps = model.apply(v, warp(im, boxes[:, None], crop), train=False, features=True)
    return jnp.mean(maps[-1], axis=(1, 2))

  image_index, box_index = np.nonzero(valid)
  out = None
  for start in range(0, len(image_index), chunk):
    real = np.arange(start, min(start + chunk, len(image_index)))
    sel = np.resize(real, chunk)
    f = np.asarray(features(variables, jnp.asarray(images[image_index[sel]]),
                            jnp.asarray(proposals[image_index[sel], box_index[sel]])))
    if out is None:
      out = np.zeros((*valid.shape, f.shape[-1]), np.float32)
    out[image_index[real], box_index[real]] = f[:len(real)]
  return out


# ---- evaluation ----------------------------------------------------------------------------

def evaluate(scores, proposals, proposal_valid, data, num_classes: int, classes,
             nms_iou: float = 0.3, max_detections: int = 100) -> np.ndarray:
  """VOC AP@0.5 [num_classes] (nan for classes not in `classes`) of per-class detections
  `scores` [N, P, >= num_classes] on `proposals` [N, P, 4], after per-class NMS."""
  run_nms = jax.jit(functools.partial(nms, iou_threshold=nms_iou, max_output_size=max_detections))
  evaluator = VOCEvaluator(num_classes, plus_one=False)
  for i in range(len(proposals)):
    boxes = proposals[i]
    det_boxes, det_scores, det_classes = [], [], []
    for c in classes:
      s = np.where(proposal_valid[i], scores[i][:, c], -np.inf).astype(np.float32)
      idx, valid = (np.asarray(a) for a in run_nms(jnp.asarray(boxes), jnp.asarray(s)))
      idx = idx[valid]
      det_boxes.append(boxes[idx])
      det_scores.append(s[idx])
      det_classes.append(np.full(len(idx), c))
    gt = data["gt_valid"][i]
    evaluator.add(np.concatenate(det_boxes or [np.zeros((0, 4))]),
                  np.concatenate(det_scores or [np.zeros(0)]),
                  np.concatenate(det_classes or [np.zeros(0, int)]),
                  data["boxes"][i][gt], data["classes"][i][gt], data["difficult"][i][gt])
  ap = evaluator.result()["ap_voc12"]
  out = np.full(num_classes, np.nan)
  out[list(classes)] = ap[list(classes)]
  return out


def padded_proposals(data: dict, limit: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `limit` ranked proposals per image; an image with none gets one dummy box
  (marked invalid) so every image keeps a fixed shape."""
  limit = max(1, min(limit, int(data["proposal_valid"].sum(axis=1).max())))
  proposals = data["proposals"][:, :limit]
  valid = data["proposal_valid"][:, :limit]
  h, w = data["images"].shape[1:3]
  proposals = np.where(valid[..., None], proposals, np.array([0, 0, w, h], np.float32))
  return proposals.astype(np.float32), valid


# ---- the run -------------------------------------------------------------------------------

def _classifier(workdir: pathlib.Path):
  """(model options, variables) of the multi-label classifier in `workdir`, trained there
  first (train/configs/multilabel_shapes.py) when it has no checkpoint."""
  import importlib

  from jaxvision.training.finetune import load_pretrained
  config = importlib.import_module(CONFIG).get_config()
  if not (workdir / "checkpoints").is_dir() or not any((workdir / "checkpoints").iterdir()):
    from jaxvision.training.fit import fit
    print(f"training the classifier in {workdir} ({CONFIG})")
    fit(config, workdir)
  options = config.model.options.to_dict()
  return options, load_pretrained(workdir, config.model.name, **options)


def _log(t0: float, message: str) -> None:
  print(f"[{time.time() - t0:6.0f}s] {message}", flush=True)


def run(args) -> dict:
  from jaxvision.data import crops, detection, proposals as proposals_lib
  from jaxvision.data.builders.shapes import CLASSES
  from jaxvision.losses.multilabel import multi_hot

  t0 = time.time()
  k_classes = len(CLASSES)
  boxed, label_only = check_split(CLASSES, args.boxed, args.label_only)
  bad = [k for k in args.k if not 1 <= k <= len(boxed)]
  if bad:
    raise ValueError(f"k: expected values in [1, {len(boxed)}] (the boxed classes), got {bad}")
  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  options, classifier = _classifier(pathlib.Path(args.classifier))
  spec = detection.get_spec(DATASET)
  size = spec.image_size

  _log(t0, "reading the training split")
  if args.train_regions == "selective_search":
    data = proposals_lib.split_proposals(DATASET, "train", max_boxes=2000)
    data = {k: v[:args.train_images] if isinstance(v, np.ndarray) else v for k, v in data.items()}
    train = {"image": proposals_lib.normalise(data["images"], DATASET), "boxes": data["boxes"],
             "classes": data["classes"], "valid": data["gt_valid"]}
    regions, region_valid = proposal_regions(data)
  else:
    train = crops.load_split(DATASET, "train", limit=args.train_images)
    regions = training_regions(train["boxes"], train["valid"], size, seed=args.seed)
    region_valid = np.ones(regions.shape[:2], bool)
  labels = multi_hot(train["classes"], train["valid"], k_classes)
  boxed_images = ~labels[:, list(label_only)].any(axis=1)
  # Boxes of the boxed classes only, their classes renumbered 0..len(boxed)-1.
  boxed_map = np.full(k_classes, -1)
  boxed_map[list(boxed)] = np.arange(len(boxed))
  boxed_valid = train["valid"] & np.isin(train["classes"], boxed)
  boxed_labels = crops.label_windows(regions, train["boxes"], np.maximum(boxed_map[train["classes"]], 0),
                                     boxed_valid, object_iou=0.5, background_iou=0.5)
  all_labels = crops.label_windows(regions, train["boxes"], train["classes"], train["valid"],
                                   object_iou=0.5, background_iou=0.5)
  boxed_labels[~region_valid] = all_labels[~region_valid] = -1  # padding: never sampled
  tune = dict(steps=args.steps, crop=args.crop, batch_images=args.batch_images,
              per_image=args.regions_per_image, learning_rate=args.learning_rate, seed=args.seed)

  t1 = time.time()
  _log(t0, f"fine-tuning the detector on {', '.join(args.boxed)} ({boxed_images.sum()} images)")
  model_boxed = create_model("resnet", num_classes=len(boxed) + 1, **options)
  detector = finetune_detector(model_boxed, detector_init(classifier, boxed),
                               train["image"][boxed_images], regions[boxed_images],
                               boxed_labels[boxed_images], **tune)
  _log(t0, f"fine-tuning the upper bound on all classes ({len(train['image'])} images)")
  model_all = create_model("resnet", num_classes=k_classes + 1, **options)
  upper = finetune_detector(model_all, detector_init(classifier, range(k_classes)),
                            train["image"], regions, all_labels, **tune)
  train_seconds = time.time() - t1

  c_vec, d_vec = fc_vectors(classifier), fc_vectors(detector)
  lsda = {k: transfer(c_vec, d_vec, boxed, label_only, k) for k in args.k}
  no_transfer = lsda[args.k[0]].copy()
  no_transfer[:, list(label_only)] = c_vec[:, list(label_only)]

  test = proposals_lib.split_proposals(DATASET, "test", max_boxes=2000)
  n = args.test_images or len(test["images"])
  test = {k: v[:n] if isinstance(v, np.ndarray) else v for k, v in test.items()}
  boxes, valid = padded_proposals(test, args.proposals)
  images = proposals_lib.normalise(test["images"], DATASET)
  model_cls = create_model("resnet", num_classes=k_classes, **options)

  t2 = time.time()
  _log(t0, f"scoring {int(valid.sum())} proposals of {n} test images")

  def head(features, vectors):
    kernel, bias = split_head(vectors)
    return features @ kernel + bias

  f_cls = region_features(model_cls, classifier, images, boxes, valid, args.crop)
  f_det = region_features(model_boxed, detector, images, boxes, valid, args.crop)
  f_up = region_features(model_all, upper, images, boxes, valid, args.crop)
  if args.score == "softmax":
    detector_score = lambda z: np.asarray(jax.nn.softmax(z, axis=-1))
  else:
    detector_score = lambda z: z
  scores = {
      "classifier": np.asarray(jax.nn.sigmoid(head(f_cls, c_vec))),
      "adapted, no transfer": detector_score(head(f_det, no_transfer)),
      **{f"LSDA (k={k})": detector_score(head(f_det, w)) for k, w in lsda.items()},
      "upper bound (boxes of all classes)": detector_score(head(f_up, fc_vectors(upper))),
  }
  aps = {name: evaluate(s, boxes, valid, test, k_classes, range(k_classes))
         for name, s in scores.items()}
  test_seconds = time.time() - t2

  names = [CLASSES[j] for j in label_only]
  rows = []
  for name, ap in aps.items():
    rows.append({"method": name, **{f"AP {CLASSES[j]}": float(ap[j]) for j in label_only},
                 "mAP label-only": float(np.mean(ap[list(label_only)])),
                 "mAP boxed": float(np.mean(ap[list(boxed)]))})
  result = {
      "boxed": [CLASSES[i] for i in boxed], "label_only": names, "score": args.score,
      "boxed_by_distance": {CLASSES[j]: [CLASSES[i] for i in near] for j, near in
                  zip(label_only, nearest_boxed(c_vec, boxed, label_only, len(boxed)))},
      "rows": rows, "train_images": len(train["image"]), "train_regions": args.train_regions,
      "adaptation_images": int(boxed_images.sum()), "test_images": n,
      "proposals_per_image": float(valid.sum(1).mean()), "steps": args.steps,
      "finetune_seconds": train_seconds, "test_seconds": test_seconds,
      "seconds": time.time() - t0,
  }
  table = format_table(rows)
  (out_dir / "table.md").write_text(table + "\n")
  (out_dir / "results.json").write_text(json.dumps(result, indent=2))
  print(table)
  print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
  return result


def format_table(rows: list[dict]) -> str:
  keys = list(rows[0])
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  for r in rows:
    lines.append("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                                   for k in keys) + " |")
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  names = lambda s: [c for c in s.split(",") if c]
  p.add_argument("--boxed", type=names, default=["circle", "square"])
  p.add_argument("--label_only", type=names, default=["triangle"])
  p.add_argument("--k", type=lambda s: [int(v) for v in s.split(",")], default=[1],
                 help="nearest boxed classes per label-only class (a comma list: one row each)")
  p.add_argument("--score", choices=("softmax", "logit"), default="softmax",
                 help="detectors' region score: class posterior over classes + background, or "
                      "the raw output")
  p.add_argument("--classifier", default="runs/multilabel_shapes",
                 help="workdir of the multi-label classifier (trained there if empty)")
  p.add_argument("--out", default="runs/lsda")
  p.add_argument("--steps", type=int, default=400, help="fine-tuning steps per detector")
  p.add_argument("--batch_images", type=int, default=8)
  p.add_argument("--regions_per_image", type=int, default=16)
  p.add_argument("--learning_rate", type=float, default=1e-3)
  p.add_argument("--crop", type=int, default=32, help="side of the warped regions")
  p.add_argument("--train_images", type=int, default=None)
  p.add_argument("--train_regions", choices=("selective_search", "jittered"),
                 default="selective_search",
                 help="fine-tuning regions: Selective Search proposals + ground truth (R-CNN), "
                      "or jittered ground truth + uniform random boxes")
  p.add_argument("--test_images", type=int, default=None, help="default: the whole test split")
  p.add_argument("--proposals", type=int, default=300, help="ranked proposals per test image")
  p.add_argument("--seed", type=int, default=0)
  run(p.parse_args(argv))


if __name__ == "__main__":
  main()
