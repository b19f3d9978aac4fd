"""The lecture's walk from R-CNN to Faster R-CNN, re-run: R-CNN, SPP-net, Fast R-CNN and Faster
R-CNN with the same backbone, trained on the same images and tested on the same images.

`python -m jaxvision.analysis.detection_walk [--steps N] [--out-dir DIR] [--docs-image PNG]`
trains each on `shapes_detection/64` (train split; selective-search proposals from
`jaxvision.data.proposals.split_proposals`, cached on disk) and evaluates on the test split,
offline, then writes `table.md`, `results.json` and `detection_walk.png` (VOC mAP@0.5, training
time, test time per image, proposals per image) under the out dir.

- Backbone and Faster R-CNN / Fast R-CNN options: `train/configs/faster_rcnn_shapes.py` (a
  narrow ResNet, stride 8); R-CNN warps each proposal to `--warp-size` (with the paper's context
  padding scaled down: 2 pixels of 32), SPP-net pools levels (1, 2, 4) on the stride-8 map. All
  four share the head (two fully connected layers of 256, softmax classifier, class-specific
  box regression) and are trained from scratch, end to end, with the same optimiser, steps,
  images per step and RoIs per image (the true boxes are added to the proposals).
- Training: an in-memory loop over random batches (left-right flips), jitted steps; the time
  is the loop's wall time, the first step's compilation included.
- Test time per image: the network's (jitted, measured over the test images after a warm-up
  call) plus, for the three methods that take proposals, selective search's mean time per
  image (measured here on `--ss-timing-images` test images; the cached proposals are the same
  boxes). R-CNN's network time is one CNN pass per warped proposal.
- Proposals per image: the mean number of valid proposals the detector scored per test image
  (Faster R-CNN: its RPN's, after NMS).

Models, timings and table are host-side; the data module (TensorFlow) is imported on use.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pathlib
import shutil
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxvision.losses.rcnn import rcnn_losses
from jaxvision.metrics.voc import VOCEvaluator
from jaxvision.models import create_model
from jaxvision.models.faster_rcnn import SAMPLING_RNG
from jaxvision.ops.boxes import xyxy_to_yxyx
from jaxvision.training.train_state import TrainState

DATASET = "shapes_detection/64"
METHODS = ("R-CNN", "SPP-net", "Fast R-CNN", "Faster R-CNN")
_MODEL_NAMES = {"R-CNN": "rcnn", "SPP-net": "sppnet", "Fast R-CNN": "fast_rcnn",
                "Faster R-CNN": "faster_rcnn"}
_HEAD_OPTIONS = ("representation_size", "roi_batch_size", "score_threshold", "nms_threshold",
                 "max_detections")


@dataclasses.dataclass
class Split:
  """A split in memory: normalised images and pixel-box targets, proposals."""
  images: np.ndarray  # float32 [N, H, W, 3], normalised
  raw: np.ndarray  # uint8 [N, H, W, 3]
  boxes: np.ndarray  # float32 [N, G, 4] pixel (x1, y1, x2, y2)
  classes: np.ndarray  # int32 [N, G]
  gt_valid: np.ndarray  # bool [N, G]
  proposals: np.ndarray  # float32 [N, K, 4] pixel (x1, y1, x2, y2), ranked
  proposal_valid: np.ndarray  # bool [N, K]

  def __len__(self) -> int:
    return len(self.images)


def load_split(split: str, max_proposals: int, limit: int = 0) -> Split:
  """`split_proposals` of `split`, normalised with the dataset's statistics; proposals cut to
  the most any image has (the rest is padding); the first `limit` images (0: all)."""
  from jaxvision.data.proposals import normalise, split_proposals  # TensorFlow on use only
  d = split_proposals(DATASET, split=split, max_boxes=max_proposals)
  n = len(d["images"]) if limit <= 0 else min(limit, len(d["images"]))
  raw = np.asarray(d["images"][:n])
  images = normalise(raw, DATASET)
  valid = np.asarray(d["proposal_valid"][:n], bool)
  k = max(1, int(valid.sum(1).max(initial=0)))
  return Split(images=images, raw=raw, boxes=np.asarray(d["boxes"][:n], np.float32),
               classes=np.asarray(d["classes"][:n], np.int32),
               gt_valid=np.asarray(d["gt_valid"][:n], bool),
               proposals=np.asarray(d["proposals"][:n, :k], np.float32), proposal_valid=valid[:, :k])


def faster_rcnn_config():
  """The shapes Faster R-CNN config (the walk's shared backbone and head sizes)."""
  return importlib.import_module("train.configs.faster_rcnn_shapes").get_config()


def model_for(method: str, args) -> object:
  """The walk's model for `method`: the config's backbone and head sizes for all four."""
  options = faster_rcnn_config().model.options.to_dict()
  common = {k: options[k] for k in ("backbone", "backbone_options", "representation_size")}
  common["roi_batch_size"] = args.rois_per_image
  name = _MODEL_NAMES[method]
  if method == "R-CNN":
    extra = dict(warp_size=args.warp_size, context_padding=args.context_padding)
  elif method == "SPP-net":
    extra = dict(levels=tuple(args.spp_levels))
  else:
    extra = {k: v for k, v in options.items() if k not in common}
    if method == "Fast R-CNN":
      extra = {k: v for k, v in extra.items() if not k.startswith("rpn_") or k == "rpn_min_size"}
  return create_model(name, num_classes=args.num_classes, **common, **extra)


def _flip_boxes(boxes, flip, width: int):
  """Pixel boxes [B, N, 4] mirrored left-right where `flip` [B]."""
  mirrored = np.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0],
                       boxes[..., 3]], -1)
  return np.where(flip[:, None, None], mirrored, boxes)


def _batch(data: Split, index, rng: np.random.Generator | None, uses_proposals: bool) -> dict:
  images, boxes, props = data.images[index], data.boxes[index], data.proposals[index]
  if rng is not None:
    flip = rng.random(len(index)) < 0.5
    width = images.shape[2]
    images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    boxes, props = _flip_boxes(boxes, flip, width), _flip_boxes(props, flip, width)
  valid = data.gt_valid[index]
  h, w = images.shape[1:3]
  targets = {"boxes": np.where(valid[..., None], np.asarray(xyxy_to_yxyx(boxes, h, w)), 0.0),
             "classes": data.classes[index], "valid": valid}
  kwargs = {"targets": targets}
  if uses_proposals:
    kwargs.update(proposals=props, proposal_valid=data.proposal_valid[index])
  return {"image": images, "kwargs": kwargs}


def train(model, data: Split, method: str, args) -> tuple[TrainState, float]:
  """`args.steps` steps of AdamW (warm-up, cosine decay) on random batches; (state, seconds)."""
  uses_proposals = method != "Faster R-CNN"
  init_batch = _batch(data, np.arange(1), None, uses_proposals)
  kwargs = {k: v for k, v in init_batch["kwargs"].items() if k != "targets"}
  variables = jax.jit(lambda r, x, kw: model.init(r, x, train=False, **kw))(
      jax.random.key(args.seed), init_batch["image"], kwargs)
  schedule = optax.warmup_cosine_decay_schedule(0.0, args.learning_rate,
                                                max(1, args.steps // 10), max(args.steps, 2))
  tx = optax.adamw(schedule, weight_decay=args.weight_decay)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                            batch_stats=variables.get("batch_stats", {}), tx=tx)
  betas = dict(box_beta=model.box_smooth_l1_beta,
               rpn_beta=getattr(model, "rpn_smooth_l1_beta", 1 / 9))

  @jax.jit
  def step(state, images, kwargs, key):
    def loss_fn(params):
      out, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                    train=True, mutable=["batch_stats"],
                                    rngs={SAMPLING_RNG: key}, **kwargs)
      loss, terms = rcnn_losses(out, **betas)
      return loss, (terms, updates)
    grads, (terms, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
    return state, terms

  rng = np.random.default_rng(args.seed)
  key = jax.random.key(args.seed + 1)
  start = time.perf_counter()
  bar = tqdm(range(args.steps), desc=f"train {method}", unit="step")
  for i in bar:
    batch = _batch(data, rng.integers(0, len(data), args.batch_size), rng, uses_proposals)
    state, terms = step(state, batch["image"], batch["kwargs"], jax.random.fold_in(key, i))
    if i % 25 == 0 or i == args.steps - 1:
      bar.set_postfix({k: f"{float(v):.3f}" for k, v in terms.items()})
  jax.block_until_ready(state.params)
  return state, time.perf_counter() - start


def evaluate(model, state: TrainState, data: Split, method: str, args) -> dict:
  """VOC mAP@0.5 on `data`, the network's seconds per image and proposals per image."""
  uses_proposals = method != "Faster R-CNN"
  test_k = args.rcnn_test_proposals if method == "R-CNN" and args.rcnn_test_proposals else None
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  @jax.jit
  def predict(images, proposals, proposal_valid):
    kw = dict(proposals=proposals, proposal_valid=proposal_valid) if uses_proposals else {}
    out = model.apply(variables, images, train=False, **kw)
    return out["detections"], jnp.sum(out["proposals"]["valid"], -1)

  def inputs(index):
    props, valid = data.proposals[index], data.proposal_valid[index]
    if test_k:
      props, valid = props[:, :test_k], valid[:, :test_k]
    return data.images[index], props, valid

  b = args.eval_batch_size
  batches = [np.arange(i, min(i + b, len(data))) for i in range(0, len(data), b)]
  jax.block_until_ready(predict(*inputs(batches[0])))  # compile (and a ragged last batch below)
  if len(batches[-1]) != b:
    jax.block_until_ready(predict(*inputs(batches[-1])))
  evaluator = VOCEvaluator(args.num_classes, plus_one=False)
  seconds, counts = 0.0, []
  for index in tqdm(batches, desc=f"test {method}", unit="batch"):
    x = inputs(index)
    start = time.perf_counter()
    found, used = jax.block_until_ready(predict(*x))
    seconds += time.perf_counter() - start
    found = jax.device_get(found)
    counts.extend(np.asarray(used).tolist())
    for j, i in enumerate(index):
      keep = found["valid"][j]
      gt = data.gt_valid[i]
      evaluator.add(found["boxes"][j][keep], found["scores"][j][keep], found["labels"][j][keep],
                    data.boxes[i][gt], data.classes[i][gt])
  result = evaluator.result()
  return {"map_voc07": result["map_voc07"], "map_voc12": result["map_voc12"],
          "net_s_per_image": seconds / len(data), "proposals_per_image": float(np.mean(counts)),
          "test_proposals_cap": test_k}


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
               f"{meta['batch_size']} images, {meta['rois_per_image']} RoIs per image (training "
               f"time includes compilation); selective search {meta['ss_ms']:.1f} ms/image (mean "
               f"of {meta['ss_images']} test images); networks run on each image's proposals "
               f"padded to {meta['test_padded_proposals']}, {meta['eval_batch_size']} images per "
               f"call; {meta['device']}; walk wall time {meta['wall_s']:.0f} s.")
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
  train_data = load_split("train", args.max_proposals, args.train_images)
  test_data = load_split("test", args.max_proposals, args.test_images)
  from jaxvision.data.detection import get_spec  # TensorFlow on use only
  args.num_classes = get_spec(DATASET).num_classes
  ss = selective_search_seconds(test_data.raw, args.ss_timing_images)
  rows = []
  for method in args.methods:
    model = model_for(method, args)
    state, train_s = train(model, train_data, method, args)
    r = evaluate(model, state, test_data, method, args)
    r.update(method=method, train_s=train_s,
             ss_s_per_image=ss if method != "Faster R-CNN" else 0.0)
    r["test_s_per_image"] = r["ss_s_per_image"] + r["net_s_per_image"]
    rows.append(r)
    tqdm.write(f"{method}: mAP {r['map_voc07']:.3f}, train {train_s:.0f} s, test "
               f"{r['test_s_per_image'] * 1e3:.1f} ms/image")
  meta = dict(dataset=DATASET, train_images=len(train_data), test_images=len(test_data),
              steps=args.steps, batch_size=args.batch_size, rois_per_image=args.rois_per_image,
              ss_ms=ss * 1e3, ss_images=min(args.ss_timing_images, len(test_data)),
              test_padded_proposals=test_data.proposals.shape[1],
              eval_batch_size=args.eval_batch_size,
              device=f"{jax.default_backend()}, {os.cpu_count()} cores",
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
