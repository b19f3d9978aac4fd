"""Recall of Selective Search proposals at K on a detection split: a table and a plot.

`python -m jaxvision.analysis.proposal_recall [--split test --max-boxes 2000
--out docs/images/proposal_recall.png]` computes (or loads the cached) proposals of the split
(`jaxvision.data.proposals.split_proposals`), prints recall@K at IoU 0.5 and 0.7 for K = 10,
100, 1000 and max-boxes, the proposals per image and the time per image, and plots recall
against K (log scale), one curve per IoU threshold.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
from matplotlib.figure import Figure  # no pyplot: the caller's backend (inline plots) untouched

from jaxvision.metrics.proposal_recall import proposal_recall

TABLE_KS = (10, 100, 1000)
IOU_THRESHOLDS = (0.5, 0.7)


def table_ks(max_boxes: int) -> tuple[int, ...]:
  return tuple(sorted({*TABLE_KS, max_boxes}))


def format_table(result: dict) -> str:
  """Markdown table of `proposal_recall`'s result: one row per IoU threshold."""
  lines = ["| IoU | " + " | ".join(f"recall@{k}" for k in result["ks"]) + " |",
           "|---|" + "---|" * len(result["ks"])]
  for t, row in zip(result["iou_thresholds"], result["recall"]):
    lines.append(f"| {t} | " + " | ".join(f"{r:.3f}" for r in row) + " |")
  return "\n".join(lines)


def plot_recall(data: dict, out, max_boxes: int, title: str = "") -> pathlib.Path:
  """Recall against K (log x), one curve per IoU threshold; saves a PNG."""
  ks = tuple(int(k) for k in np.unique(np.round(np.geomspace(1, max_boxes, 80))))
  result = proposal_recall(data["proposals"], data["proposal_valid"], data["boxes"],
                           data["gt_valid"], ks=ks, iou_thresholds=IOU_THRESHOLDS)
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  for t, row in zip(IOU_THRESHOLDS, result["recall"]):
    ax.plot(ks, row, label=f"IoU >= {t}")
  ax.axvline(result["mean_proposals"], color="gray", linestyle=":",
             label=f"mean proposals per image ({result['mean_proposals']:.0f})")
  ax.set_xscale("log")
  ax.set_xlabel("K (proposals per image)")
  ax.set_ylabel("recall")
  ax.set_ylim(0, 1.02)
  ax.grid(alpha=0.3, which="both")
  ax.legend(loc="lower right")
  if title:
    ax.set_title(title)
  fig.tight_layout()
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=100)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="shapes_detection/64")
  p.add_argument("--split", default="test")
  p.add_argument("--max-boxes", type=int, default=2000)
  p.add_argument("--data-dir", default=None)
  p.add_argument("--processes", type=int, default=None, help="worker processes (default: none)")
  p.add_argument("--recompute", action="store_true", help="ignore (and rewrite) the cache")
  p.add_argument("--out", default="docs/images/proposal_recall.png", help="the plot ('' none)")
  args = p.parse_args(argv)
  from jaxvision.data.proposals import split_proposals  # TensorFlow only when run
  data = split_proposals(args.dataset, args.split, args.max_boxes, args.data_dir,
                         processes=args.processes, recompute=args.recompute)
  result = proposal_recall(data["proposals"], data["proposal_valid"], data["boxes"],
                           data["gt_valid"], ks=table_ks(args.max_boxes),
                           iou_thresholds=IOU_THRESHOLDS)
  counts = data["proposal_valid"].sum(axis=1)
  when = ("loaded from the cache; measured when it was made" if data["from_cache"]
          else "measured now")
  print(f"{args.dataset} {args.split}: {len(counts)} images, {result['num_gt']} ground-truth "
        f"boxes, max_boxes={args.max_boxes}")
  print(format_table(result))
  print(f"proposals per image: mean {counts.mean():.1f}, median {np.median(counts):.0f}, "
        f"min {counts.min()}, max {counts.max()}")
  print(f"time per image: {1000 * data['seconds_per_image']:.1f} ms ({when})")
  if args.out:
    title = f"Selective Search recall, {args.dataset} {args.split}"
    print(f"plot: {plot_recall(data, args.out, args.max_boxes, title)}")


if __name__ == "__main__":
  main()
