"""Error against iterations for the arms of a seeded study: the mean over seeds with a band
from the lowest to the highest seed."""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.figure import Figure  # no pyplot: the caller's backend untouched

from jaxvision.plots.figure import save_figure


def _band(curves: list[tuple[list, list]]):
  """(steps, mean, low, high) over the seeds' curves, on the steps they all logged."""
  common = sorted(set.intersection(*(set(s) for s, _ in curves)))
  values = np.array([[dict(zip(s, e))[step] for step in common] for s, e in curves])
  return np.array(common), values.mean(0), values.min(0), values.max(0)


def plot_error_bands(rows: list[dict], out: str | pathlib.Path, title: str = "") -> pathlib.Path:
  """Training (dashed) and test (solid) error in % against iterations, one colour per arm;
  `rows` are a seeded study's runs ({"arm", "curves": {"train"/"test": (steps, errors)}})."""
  fig = Figure(figsize=(11, 4.2))
  axes = fig.subplots(1, 2, sharey=True)
  arms = list(dict.fromkeys(r["arm"] for r in rows))
  for i, arm in enumerate(arms):
    colour = f"C{i}"
    for ax, split in zip(axes, ("train", "test")):
      curves = [r["curves"][split] for r in rows if r["arm"] == arm and r["curves"][split][0]]
      if not curves:
        continue
      steps, mean, low, high = _band(curves)
      ax.plot(steps, 100 * mean, "--" if split == "train" else "-", color=colour,
              label=f"{arm} ({len(curves)} seed{'' if len(curves) == 1 else 's'})")
      ax.fill_between(steps, 100 * low, 100 * high, color=colour, alpha=0.2, linewidth=0)
  for ax, split in zip(axes, ("training", "test")):
    ax.set_xlabel("iteration")
    ax.set_title(f"{split} error (band: lowest to highest seed)")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("error (%)")
  axes[1].legend()
  return save_figure(fig, out, title)
