"""LSDA on `shapes`: detect classes that have image-level labels only, by transferring how a
classifier became a detector for the classes that have boxes (Hoffman et al. 2014).

  python -m jaxvision.analysis.lsda [--boxed circle,square] [--label_only triangle] [--k 1]

1. Classifier: the multi-label network of jaxvision/configs/multilabel_shapes.py trained on all
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
   plus uniform random boxes (`jittered`); 1/4 of each batch are objects, as in R-CNN. Each
   fine-tuning is a `classification` run on the warped crops, built by
   jaxvision.training.run.build_run and trained by fit's loop (the shared train step) in
   `--out`/runs/{adapted,upper_bound} (jaxvision.analysis.memory_run); its evaluation is the
   region accuracy on the ground truth and proposals of the first `--eval_images` test images.
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
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.analysis.lsda_regions import (evaluate, padded_proposals, proposal_regions,
                                             region_batches, region_eval_set, region_features,
                                             region_labels, training_regions)
from jaxvision.analysis.memory_run import build_memory_run, fit_memory_run, padded_batches
from jaxvision.models import create_model
from jaxvision.models.lsda import check_split, head_vectors, nearest_boxed, split_head, transfer

DATASET = "shapes_detection/64"
CONFIG = "jaxvision.configs.multilabel_shapes"


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


def detector_config(classifier_config, args):
  """The fine-tuning's training config: the classifier's model, `classification` of warped
  regions (`batch_images` x `regions_per_image` per step), AdamW with cosine decay, no warm-up,
  one evaluation at the end."""
  c = classifier_config.copy_and_resolve_references()
  c.task, c.dataset.name = "classification", DATASET
  c.batch_size = c.eval_batch_size = args.batch_images * args.regions_per_image
  c.num_train_steps = args.steps
  c.optimizer.name, c.optimizer.schedule = "adamw", "cosine"
  c.optimizer.learning_rate, c.optimizer.weight_decay = args.learning_rate, 1e-4
  c.optimizer.warmup_epochs = 0.0
  c.log_every_steps = 50
  c.eval_every_steps = c.checkpoint_every_steps = args.steps
  c.best_metric, c.plot, c.seed = "accuracy", False, args.seed
  return c


def finetune_detector(config, workdir, model, variables: dict, train_set: dict, eval_set: dict,
                      args) -> dict:
  """Fine-tunes `model` (outputs: classes + background), starting from `variables`, with
  softmax cross-entropy on warped regions through fit's loop in `workdir`; returns its final
  variables. `train_set` and `eval_set`: {images, regions [N, M, 4], labels [N, M] (class + 1,
  0 background (the last output), -1 never sampled)}."""
  num_outputs = int(variables["params"]["fc"]["bias"].shape[0])
  crops = dict(crop=args.crop, per_image=args.regions_per_image, num_outputs=num_outputs,
               seed=args.seed)
  held_out = region_eval_set(eval_set["images"], eval_set["regions"], eval_set["labels"], **crops)
  run = build_memory_run(
      config, workdir, model=model, num_classes=num_outputs, variables=variables,
      train_source=region_batches(train_set["images"], train_set["regions"], train_set["labels"],
                                  batch_images=args.batch_images, **crops),
      eval_source=lambda size: padded_batches(held_out, size))
  summary, final = fit_memory_run(run)
  print(f"{workdir}: region accuracy {summary['eval']['accuracy']:.3f} on "
        f"{len(held_out['label'])} held-out regions, {summary['train_seconds']:.0f} s", flush=True)
  return final


# ---- the run -------------------------------------------------------------------------------

def _classifier(workdir: pathlib.Path):
  """(training config, variables) of the multi-label classifier in `workdir`, trained there
  first (jaxvision/configs/multilabel_shapes.py) when it has no checkpoint."""
  import importlib

  from jaxvision.training.finetune import load_pretrained
  config = importlib.import_module(CONFIG).get_config()
  if not (workdir / "checkpoints").is_dir() or not any((workdir / "checkpoints").iterdir()):
    from jaxvision.training.fit import fit
    print(f"training the classifier in {workdir} ({CONFIG})")
    fit(config, workdir)
  return config, load_pretrained(workdir, config.model.name, **config.model.options.to_dict())


def _log(t0: float, message: str) -> None:
  print(f"[{time.time() - t0:6.0f}s] {message}", flush=True)


def _first(data: dict, n: int | None) -> dict:
  """The first `n` (None: all) examples of every array of `data`."""
  return {k: v[:n] if isinstance(v, np.ndarray) else v for k, v in data.items()}


def _training_split(args) -> tuple[dict, np.ndarray, np.ndarray]:
  """({image (raw pixels), boxes, classes, valid}, regions [N, M, 4], region_valid [N, M]) of
  the training split, with the regions of `args.train_regions`."""
  from jaxvision.data import crops, detection, proposals as proposals_lib
  if args.train_regions == "selective_search":
    data = _first(proposals_lib.split_proposals(DATASET, "train", max_boxes=2000),
                  args.train_images)
    train = {"image": data["images"], "boxes": data["boxes"], "classes": data["classes"],
             "valid": data["gt_valid"]}
    return (train, *proposal_regions(data))
  train = crops.load_split(DATASET, "train", limit=args.train_images)
  spec = detection.get_spec(DATASET)  # load_split normalised the images: back to raw pixels
  train["image"] = (train["image"] * np.asarray(spec.std, np.float32)
                    + np.asarray(spec.mean, np.float32)) * 255
  regions = training_regions(train["boxes"], train["valid"], spec.image_size, seed=args.seed)
  return train, regions, np.ones(regions.shape[:2], bool)


def _region_set(images, regions, labels, keep=None) -> dict:
  """What `finetune_detector` trains or checks on: the images `keep` (None: all)."""
  keep = slice(None) if keep is None else keep
  return {"images": images[keep], "regions": regions[keep], "labels": labels[keep]}


def run(args) -> dict:
  from jaxvision.data import proposals as proposals_lib
  from jaxvision.data.builders.shapes import CLASSES
  from jaxvision.losses.multilabel import multi_hot

  t0 = time.time()
  load = list(np.round(os.getloadavg(), 1))  # 1, 5, 15 min; again at the end
  k_classes = len(CLASSES)
  boxed, label_only = check_split(CLASSES, args.boxed, args.label_only)
  bad = [k for k in args.k if not 1 <= k <= len(boxed)]
  if bad:
    raise ValueError(f"k: expected values in [1, {len(boxed)}] (the boxed classes), got {bad}")
  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  classifier_config, classifier = _classifier(pathlib.Path(args.classifier))
  options = classifier_config.model.options.to_dict()

  _log(t0, "reading the training split")
  train, regions, region_valid = _training_split(args)

  def no_label_only(d):  # images without any label-only object
    return ~multi_hot(d["classes"], d["valid"], k_classes)[:, list(label_only)].any(axis=1)

  boxed_images = no_label_only(train)
  boxed_labels = region_labels(regions, region_valid, train, boxed)
  all_labels = region_labels(regions, region_valid, train, range(k_classes))

  test = _first(proposals_lib.split_proposals(DATASET, "test", max_boxes=2000), args.test_images)
  n = len(test["images"])
  images = proposals_lib.normalise(test["images"], DATASET)
  # The fine-tunings' held-out check: ground truth + proposals of the first eval_images.
  held = _first({"boxes": test["boxes"], "classes": test["classes"], "valid": test["gt_valid"],
                 "gt_valid": test["gt_valid"], "proposals": test["proposals"],
                 "proposal_valid": test["proposal_valid"]}, args.eval_images)
  held_regions, held_valid = proposal_regions(held)
  held_images = test["images"][:args.eval_images]  # raw pixels, as the training crops

  t1 = time.time()
  config = detector_config(classifier_config, args)
  _log(t0, f"fine-tuning the detector on {', '.join(args.boxed)} ({boxed_images.sum()} images)")
  model_boxed = create_model("resnet", num_classes=len(boxed) + 1, **options)
  detector = finetune_detector(
      config, out_dir / "runs" / "adapted", model_boxed, detector_init(classifier, boxed),
      _region_set(train["image"], regions, boxed_labels, boxed_images),
      _region_set(held_images, held_regions,
                  region_labels(held_regions, held_valid, held, boxed), no_label_only(held)),
      args)
  _log(t0, f"fine-tuning the upper bound on all classes ({len(train['image'])} images)")
  model_all = create_model("resnet", num_classes=k_classes + 1, **options)
  upper = finetune_detector(
      config, out_dir / "runs" / "upper_bound", model_all,
      detector_init(classifier, range(k_classes)), _region_set(train["image"], regions, all_labels),
      _region_set(held_images, held_regions,
                  region_labels(held_regions, held_valid, held, range(k_classes))), args)
  train_seconds = time.time() - t1

  c_vec, d_vec = fc_vectors(classifier), fc_vectors(detector)
  lsda = {k: transfer(c_vec, d_vec, boxed, label_only, k) for k in args.k}
  no_transfer = lsda[args.k[0]].copy()
  no_transfer[:, list(label_only)] = c_vec[:, list(label_only)]

  boxes, valid = padded_proposals(test, args.proposals)
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
      "seconds": time.time() - t0, "load_average": load + list(np.round(os.getloadavg(), 1)),
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
  p.add_argument("--eval_images", type=int, default=100,
                 help="test images whose regions check each fine-tuning (region accuracy)")
  p.add_argument("--seed", type=int, default=0)
  run(p.parse_args(argv))


if __name__ == "__main__":
  main()
