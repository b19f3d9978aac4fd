"""Training curves: loss and accuracy against step, from metrics.jsonl rows."""

from __future__ import annotations

import pathlib

from matplotlib.figure import Figure  # no pyplot: the caller's backend (inline plots) untouched

from jaxvision.plots.figure import save_figure


def plot_training_curves(rows: list[dict], out: str | pathlib.Path, title: str = "") -> pathlib.Path:
  """Loss and accuracy against step, train and eval, from metrics.jsonl rows; saves a PNG."""
  fig = Figure(figsize=(10, 4))
  axes = fig.subplots(1, 2)
  for ax, key in zip(axes, ("loss", "accuracy")):
    for split, style in (("train", "-"), ("eval", "o-")):
      pts = [(r["step"], r[key]) for r in rows if r.get("split") == split and key in r]
      if pts:
        steps, values = zip(*sorted(dict(pts).items()))
        ax.plot(steps, values, style, label=split, markersize=3)
    if key == "loss":
      ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
  return save_figure(fig, out, title)
