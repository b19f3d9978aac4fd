"""The lecture's walk from R-CNN to Faster R-CNN, re-run: R-CNN, SPP-net, Fast R-CNN and Faster
R-CNN with the same backbone, trained on the same images and tested on the same images.

`python -m jaxvision.analysis.detection_walk [--steps N] [--out-dir DIR] [--docs-image PNG]`
trains each on `shapes_detection/64` (train split; selective-search proposals from
`jaxvision.data.proposals.split_proposals`, cached on disk) and evaluates on the test split,
offline, then writes `table.md`, `results.json` and `detection_walk.png` (VOC mAP@0.5, training
time, test time per image, proposals per image) under the out dir.

- Backbone and Faster R-CNN / Fast R-CNN options: `jaxvision/configs/faster_rcnn_shapes.py` (a
  narrow ResNet, stride 8); R-CNN warps each proposal to `--warp-size` (with the paper's context
  padding scaled down: 2 pixels of 32), SPP-net pools levels (1, 2, 4) on the stride-8 map. All
  four share the head (two fully connected layers of 256, softmax classifier, class-specific
  box regression) and are trained from scratch, end to end, with the same optimiser, steps,
  images per step and RoIs per image (the true boxes are added to the proposals).
- Training: each method is a run of the `rcnn_detection` task built by
  `jaxvision.training.run.build_run` and trained by fit's loop (the shared train step) in
  `OUT/runs/<model>` (`jaxvision.analysis.memory_run`), on random batches of the split in memory
  (left-right flips) that carry the proposals as batch fields; the time is the loop's wall time,
  the first step's compilation included, the evaluation excluded.
- mAP: the run's evaluation (the task's VOC evaluator) on the test images and their proposals.
- Test time per image: the network's (a jitted forward pass without targets, measured over the
  test images after a warm-up call) plus, for the three methods that take proposals, selective
  search's mean time per image (measured here on `--ss-timing-images` test images; the cached
  proposals are the same boxes). R-CNN's network time is one CNN pass per warped proposal.
- Proposals per image: the mean number of valid proposals the detector scored per test image
  (Faster R-CNN: its RPN's, after NMS).

Models, timings and table are host-side; the data module (TensorFlow) is imported on use.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import json
import os
import pathlib
import shutil
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxvision.analysis.memory_run import build_memory_run, fit_memory_run, padded_batches
from jaxvision.ops.boxes import xyxy_to_yxyx

DATASET = "shapes_detection/64"
METHODS = ("R-CNN", "SPP-net", "Fast R-CNN", "Faster R-CNN")
_MODEL_NAMES = {"R-CNN": "rcnn", "SPP-net": "sppnet", "Fast R-CNN": "fast_rcnn",
                "Faster R-CNN": "faster_rcnn"}


@dataclasses.dataclass
class Split:
  """A split in memory: normalised images and pixel-box targets, proposals."""
  images: np.ndarray  # float32 [N, H, W, 3], normalised
  raw: np.ndarray  # uint8 [N, H, W, 3]
  boxes: np.ndarray  # float32 [N, G, 4] pixel (x1, y1, x2, y2)
  classes: np.ndarray  # int32 [N, G]
  gt_valid: np.ndarray  # bool [N, G]
  difficult: np.ndarray  # bool [N, G]
  proposals: np.ndarray  # float32 [N, K, 4] pixel (x1, y1, x2, y2), ranked
  proposal_valid: np.ndarray  # bool [N, K]

  def __len__(self) -> int:
    return len(self.images)


def load_split(split: str, max_proposals: int, limit: int = 0, data_dir=None) -> Split:
  """`split_proposals` of `split`, normalised with the dataset's statistics; proposals cut to
  the most any image has (the rest is padding); the first `limit` images (0: all; without the
  split's cached proposals, only theirs are computed)."""
  from jaxvision.data.proposals import normalise, split_proposals  # TensorFlow on use only
  d = split_proposals(DATASET, split=split, max_boxes=max_proposals, data_dir=data_dir,
                      limit=max(0, limit))
  n = len(d["images"]) if limit <= 0 else min(limit, len(d["images"]))
  raw = np.asarray(d["images"][:n])
  valid = np.asarray(d["proposal_valid"][:n], bool)
  k = max(1, int(valid.sum(1).max(initial=0)))
  return Split(images=normalise(raw, DATASET), raw=raw,
               boxes=np.asarray(d["boxes"][:n], np.float32),
               classes=np.asarray(d["classes"][:n], np.int32),
               gt_valid=np.asarray(d["gt_valid"][:n], bool),
               difficult=np.asarray(d["difficult"][:n], bool),
               proposals=np.asarray(d["proposals"][:n, :k], np.float32),
               proposal_valid=valid[:, :k])


def faster_rcnn_config():
  """The shapes Faster R-CNN config (the walk's shared backbone, head sizes and task)."""
  return importlib.import_module("jaxvision.configs.faster_rcnn_shapes").get_config()


def model_options(method: str, args) -> dict:
  """The walk's model options for `method`: the config's backbone and head sizes for all four."""
  options = faster_rcnn_config().model.options.to_dict()
  common = {k: options[k] for k in ("backbone", "backbone_options", "representation_size")}
  common["roi_batch_size"] = args.rois_per_image
  if method == "R-CNN":
    extra = dict(warp_size=args.warp_size, context_padding=args.context_padding)
  elif method == "SPP-net":
    extra = dict(levels=tuple(args.spp_levels))
  else:
    extra = {k: v for k, v in options.items() if k not in common}
    if method == "Fast R-CNN":
      extra = {k: v for k, v in extra.items() if not k.startswith("rpn_") or k == "rpn_min_size"}
  return {**common, **extra}


def walk_config(method: str, args, steps_per_epoch: int):
  """The training config of `method`: the shapes Faster R-CNN config with the walk's model,
  budget and optimiser (AdamW, warm-up over the first tenth of the steps, cosine decay)."""
  c = faster_rcnn_config()
  c.model.name = _MODEL_NAMES[method]
  c.model.options = model_options(method, args)
  c.dataset.name, c.dataset.data_dir = DATASET, args.data_dir
  c.batch_size, c.eval_batch_size = args.batch_size, args.eval_batch_size
  c.num_train_steps = args.steps
  c.optimizer.learning_rate, c.optimizer.weight_decay = args.learning_rate, args.weight_decay
  c.optimizer.warmup_epochs = max(1, args.steps // 10) / steps_per_epoch
  c.log_every_steps = 25
  c.eval_every_steps = c.checkpoint_every_steps = args.steps  # evaluate once, at the end
  c.plot, c.seed = False, args.seed
  return c


def _flip_boxes(boxes, flip, width: int):
  """Pixel boxes [B, N, 4] mirrored left-right where `flip` [B]."""
  mirrored = np.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0],
                       boxes[..., 3]], -1)
  return np.where(flip[:, None, None], mirrored, boxes)


def detection_batch(data: Split, index, rng: np.random.Generator | None,
                    uses_proposals: bool, max_proposals: int | None = None) -> dict:
  """Images `index` of `data` as an `rcnn_detection` batch: raw uint8 images (the run's step
  normalises them), normalised (ymin, xmin, ymax, xmax) boxes, classes, valid, difficult and,
  if `uses_proposals`, the first `max_proposals` (None: all) pixel proposals and their
  `proposal_valid`; flipped left-right at random by `rng`."""
  images, boxes, props = data.raw[index], data.boxes[index], data.proposals[index]
  if rng is not None:
    flip = rng.random(len(index)) < 0.5
    width = images.shape[2]
    images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    boxes, props = _flip_boxes(boxes, flip, width), _flip_boxes(props, flip, width)
  valid = data.gt_valid[index]
  h, w = images.shape[1:3]
  batch = {"image": images, "classes": data.classes[index], "valid": valid,
           "boxes": np.where(valid[..., None], np.asarray(xyxy_to_yxyx(boxes, h, w)),
                             0.0).astype(np.float32),
           "difficult": data.difficult[index]}
  if uses_proposals:
    batch["proposals"] = props[:, :max_proposals]
    batch["proposal_valid"] = data.proposal_valid[index][:, :max_proposals]
  return batch


def training_batches(data: Split, args, uses_proposals: bool):
  """`start_step -> iterator` of random flipped training batches, each a function of
  (seed, step) only."""
  def batches(start_step: int):
    for step in itertools.count(start_step):
      rng = np.random.default_rng([args.seed, step])
      yield detection_batch(data, rng.integers(0, len(data), args.batch_size), rng,
                            uses_proposals)
  return batches


def rcnn_test_cap(method: str, args) -> int | None:
  return args.rcnn_test_proposals if method == "R-CNN" and args.rcnn_test_proposals else None


def train_and_evaluate(method: str, train_data: Split, test_data: Split, args,
                       steps_per_epoch: int) -> dict:
  """Trains `method` through fit's loop; its run's evaluation on the test split, training
  time, and the network's test time (`network_timing`)."""
  uses_proposals = method != "Faster R-CNN"
  cap = rcnn_test_cap(method, args)
  test = detection_batch(test_data, np.arange(len(test_data)), None, uses_proposals, cap)
  config = walk_config(method, args, steps_per_epoch)
  run = build_memory_run(config, pathlib.Path(args.out_dir) / "runs" / config.model.name,
                         train_source=training_batches(train_data, args, uses_proposals),
                         eval_source=lambda size: padded_batches(test, size))
  run.task.num_overlays = 0  # the eval pipeline that draws them carries no proposals
  summary, variables = fit_memory_run(run)
  r = network_timing(run.model, variables, test_data, uses_proposals, cap, args)
  r.update(map_voc07=summary["eval"]["map_voc07"], map_voc12=summary["eval"]["map_voc12"],
           coco_ap=summary["eval"].get("coco_AP"), eval_loss=summary["eval"]["loss"],
           train_s=summary["train_seconds"], num_params=summary["num_params"])
  return r


def network_timing(model, variables: dict, data: Split, uses_proposals: bool, cap, args) -> dict:
  """The network's seconds per image on `data` (forward pass without targets, jitted, batches
  of `args.eval_batch_size`, compiled first) and the proposals it scored per image."""
  @jax.jit
  def predict(images, proposals, proposal_valid):
    kw = dict(proposals=proposals, proposal_valid=proposal_valid) if uses_proposals else {}
    out = model.apply(variables, images, train=False, **kw)
    return out["detections"], jnp.sum(out["proposals"]["valid"], -1)

  def inputs(index):
    return data.images[index], data.proposals[index, :cap], data.proposal_valid[index, :cap]

  b = args.eval_batch_size
  batches = [np.arange(i, min(i + b, len(data))) for i in range(0, len(data), b)]
  jax.block_until_ready(predict(*inputs(batches[0])))  # compile (and a ragged last batch below)
  if len(batches[-1]) != b:
    jax.block_until_ready(predict(*inputs(batches[-1])))
  seconds, counts = 0.0, []
  for index in tqdm(batches, desc="timing", unit="batch"):
    x = inputs(index)
    start = time.perf_counter()
    _, used = jax.block_until_ready(predict(*x))
    seconds += time.perf_counter() - start
    counts.extend(np.asarray(used).tolist())
  return {"net_s_per_image": seconds / len(data), "proposals_per_image": float(np.mean(counts)),
          "test_proposals_cap": cap}


def selective_search_seconds(raw: np.ndarray, n: int) -> float:
  """Mean seconds of `selective_search` per image over the first `n` images (one warm-up)."""
  from jaxvision.ops.selective_search import selective_search
  selective_search(raw[0])
  n = max(1, min(n, len(raw)))
  start = time.perf_counter()
  for image in raw[:n]:
    selective_search(image)
  return (time.perf_counter() - start) / n


def markdown_table(rows: Sequence[dict], meta: dict) -> str:
  """The walk's table (one row per method)."""
  lines = ["| method | VOC mAP@0.5 (11-pt / all-pt) | train s | test ms / image (proposals + "
           "network) | proposals / image |", "|---|---|---|---|---|"]
  for r in rows:
    cap = f" (R-CNN: best {r['test_proposals_cap']} at test)" if r["test_proposals_cap"] else ""
    test = r["test_s_per_image"] * 1e3
    split = (f"{r['ss_s_per_image'] * 1e3:.1f} + {r['net_s_per_image'] * 1e3:.1f}"
             if r["ss_s_per_image"] else f"0 + {r['net_s_per_image'] * 1e3:.1f}")
    lines.append(f"| {r['method']} | {r['map_voc07']:.3f} / {r['map_voc12']:.3f} | "
                 f"{r['train_s']:.0f} | {test:.1f} ({split}) | "
                 f"{r['proposals_per_image']:.0f}{cap} |")
  lines.append("")
  lines.append(f"{meta['dataset']}: {meta['train_images']} training images, "
               f"{meta['test_images']} test images; {meta['steps']} steps of "
               f"{meta['batch_size']} images, {meta['rois_per_image']} RoIs per image (fit's "
               f"loop, the shared train step; training time includes compilation); selective "
               f"search {meta['ss_ms']:.1f} ms/image (mean of {meta['ss_images']} test images); "
               f"networks run on each image's proposals padded to "
               f"{meta['test_padded_proposals']}, {meta['eval_batch_size']} images per call; "
               f"{meta['device']}, load average (1, 5, 15 min) {meta['load'][:3]} at the start, "
               f"{meta['load'][3:]} at the end; walk wall time {meta['wall_s']:.0f} s.")
  return "\n".join(lines)


def plot(rows: Sequence[dict], out: pathlib.Path) -> pathlib.Path:
  """Four bar panels: mAP, training time, test time per image (log; selective search hatched),
  proposals per image."""
  from matplotlib.figure import Figure  # no pyplot: the caller's backend untouched
  fig = Figure(figsize=(13, 3.4))
  axes = fig.subplots(1, 4)
  names = [r["method"] for r in rows]
  colours = ["#b2182b", "#ef8a62", "#67a9cf", "#2166ac"][:len(rows)]
  panels = (("map_voc07", "VOC mAP@0.5 (11-pt)", 1.0, False),
            ("train_s", "training time (s)", 1.0, False),
            ("test_s_per_image", "test time / image (ms)", 1e3, True),
            ("proposals_per_image", "proposals / image", 1.0, False))
  for ax, (key, title, scale, log) in zip(axes, panels):
    values = [r[key] * scale for r in rows]
    if key == "test_s_per_image":  # stacked: selective search, then the network
      ss = [r["ss_s_per_image"] * scale for r in rows]
      ax.bar(range(len(rows)), ss, color="#bbbbbb", hatch="//", label="selective search")
      ax.bar(range(len(rows)), [v - s for v, s in zip(values, ss)], bottom=ss, color=colours)
      ax.legend(fontsize=7, loc="upper right")
    else:
      ax.bar(range(len(rows)), values, color=colours)
    ax.set_xticks(range(len(rows)), names, rotation=25, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    if log:
      ax.set_yscale("log")
    for i, v in enumerate(values):
      ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=7)
    ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  return out


def run(args) -> list[dict]:
  """Trains and evaluates every method of `args.methods`; writes the table, JSON and plot."""
  wall = time.perf_counter()
  out_dir = pathlib.Path(args.out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  load_start = os.getloadavg()
  train_data = load_split("train", args.max_proposals, args.train_images, args.data_dir)
  test_data = load_split("test", args.max_proposals, args.test_images, args.data_dir)
  from jaxvision import data  # TensorFlow on use only
  config = faster_rcnn_config()
  config.dataset.name, config.dataset.data_dir = DATASET, args.data_dir
  steps_per_epoch = max(1, data.dataset_info(config.dataset).num_train // args.batch_size)
  ss = selective_search_seconds(test_data.raw, args.ss_timing_images)
  rows = []
  for method in args.methods:
    r = train_and_evaluate(method, train_data, test_data, args, steps_per_epoch)
    r.update(method=method, ss_s_per_image=ss if method != "Faster R-CNN" else 0.0)
    r["test_s_per_image"] = r["ss_s_per_image"] + r["net_s_per_image"]
    rows.append(r)
    tqdm.write(f"{method}: mAP {r['map_voc07']:.3f}, train {r['train_s']:.0f} s, test "
               f"{r['test_s_per_image'] * 1e3:.1f} ms/image")
  meta = dict(dataset=DATASET, train_images=len(train_data), test_images=len(test_data),
              steps=args.steps, batch_size=args.batch_size, rois_per_image=args.rois_per_image,
              ss_ms=ss * 1e3, ss_images=min(args.ss_timing_images, len(test_data)),
              test_padded_proposals=test_data.proposals.shape[1],
              eval_batch_size=args.eval_batch_size,
              device=f"{jax.default_backend()}, {os.cpu_count()} cores",
              load=[round(v, 1) for v in (*load_start, *os.getloadavg())],
              wall_s=time.perf_counter() - wall)
  table = markdown_table(rows, meta)
  print(table)
  (out_dir / "table.md").write_text(table + "\n")
  (out_dir / "results.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=1) + "\n")
  png = plot(rows, out_dir / "detection_walk.png")
  if args.docs_image:
    pathlib.Path(args.docs_image).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, args.docs_image)
  return rows


def parse_args(argv: Sequence[str] | None = None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--steps", type=int, default=400, help="training steps per method")
  p.add_argument("--batch-size", type=int, default=16, help="images per training step")
  p.add_argument("--rois-per-image", type=int, default=32, help="sampled RoIs per image")
  p.add_argument("--learning-rate", type=float, default=2e-3)
  p.add_argument("--weight-decay", type=float, default=5e-4)
  p.add_argument("--max-proposals", type=int, default=2000, help="selective search boxes kept")
  p.add_argument("--rcnn-test-proposals", type=int, default=0,
                 help="R-CNN scores only the best K proposals at test (0: all)")
  p.add_argument("--warp-size", type=int, default=32, help="R-CNN's warped region side")
  p.add_argument("--context-padding", type=float, default=2.0, help="R-CNN's context pixels")
  p.add_argument("--spp-levels", type=int, nargs="+", default=[1, 2, 4])
  p.add_argument("--train-images", type=int, default=0, help="first N training images (0: all)")
  p.add_argument("--test-images", type=int, default=0, help="first N test images (0: all)")
  p.add_argument("--eval-batch-size", type=int, default=10)
  p.add_argument("--ss-timing-images", type=int, default=25)
  p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--data-dir", default=None, help="TFDS data_dir (default: TFDS's)")
  p.add_argument("--out-dir", default="runs/detection_walk")
  p.add_argument("--docs-image", default="", help="also copy the plot here "
                 "(e.g. docs/images/detection_walk.png)")
  args = p.parse_args(argv)
  for name in ("steps", "batch_size", "rois_per_image", "max_proposals", "eval_batch_size"):
    if getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
  return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
  return run(parse_args(argv))


if __name__ == "__main__":
  main()
