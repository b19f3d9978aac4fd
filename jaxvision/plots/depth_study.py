"""Plots of the ODE-vs-ResNet depth study (jaxvision.analysis.depth_study) from its summary over
seeds (`depth_results.summarize`: per run and measured column {n, mean, std, lo, hi, min, max}):
accuracy against depth and against function evaluations, memory and time against depth, the
distance of a shared-weight stage to the ODE solution against the step h, and how smooth an
unshared stage's weights are in depth. Lines are the mean over the seeds, bands mean +- std."""

from __future__ import annotations

import pathlib

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # no pyplot: the caller's backend (inline plots) untouched

from jaxvision.plots.figure import save_figure

BAND = "band: mean +- std over seeds"


def _ok(rows):
  return [r for r in rows if r.get("seeds")]


def _has(r, key) -> bool:
  return isinstance(r.get(key), dict) and r[key]["n"] > 0


def _band(ax, x, stats, scale: float, colour, log: bool):
  """mean +- std; on a log axis the low side stops at the lowest seed (never at or below 0)."""
  mean = np.array([s["mean"] for s in stats]) * scale
  std = np.nan_to_num(np.array([s["std"] for s in stats])) * scale
  low = mean - std
  if log:
    low = np.maximum(low, np.array([s["min"] for s in stats]) * scale)
  if np.any(std > 0):
    ax.fill_between(x, low, mean + std, color=colour, alpha=0.2, linewidth=0)


def _curve(ax, rows, key, scale, style, colour, label, *, x="N", log=False):
  rows = sorted((r for r in rows if _has(r, key)), key=lambda r: r[x])
  if not rows:
    return
  xs = np.array([r[x] for r in rows], float)
  stats = [r[key] for r in rows]
  ax.plot(xs, [s["mean"] * scale for s in stats], style, color=colour, label=label)
  _band(ax, xs, stats, scale, colour, log)


# (middle, shared) -> line style, colour and label of a stage's curve against N.
STAGES = {("residual", True): ("o-", "C0", "odenet residual, shared weights"),
          ("residual", False): ("s--", "C1", "odenet residual, unshared weights"),
          ("bn_residual", True): ("D-", "C8", "BN ResNet stage, shared weights"),
          ("bn_residual", False): ("v--", "C9", "BN ResNet stage, unshared weights")}


def _stages(rows):
  for (middle, shared), (style, colour, label) in STAGES.items():
    mine = [r for r in _ok(rows) if r["middle"] == middle and r["shared"] == shared]
    if mine:
      yield mine, style, colour, label


def _residual_lines(ax, rows, key: str, scale: float = 1.0, log: bool = False):
  for mine, style, colour, label in _stages(rows):
    _curve(ax, mine, key, scale, style, colour, label, log=log)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("N (blocks; h = T/N)")


def _odes(rows):
  colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][2:]
  return list(zip([r for r in _ok(rows) if r["middle"] == "ode"], colours))


def _ode_lines(ax, rows, key: str, scale: float = 1.0):
  for r, c in _odes(rows):
    if _has(r, key):
      s = r[key]
      ax.axhline(s["mean"] * scale, ls=":", color=c,
                 label=f"{r['name']} (NFE {r['nfe_fwd']['mean']:.0f})")
      if s["n"] > 1 and s["std"] > 0:
        ax.axhspan((s["mean"] - s["std"]) * scale, (s["mean"] + s["std"]) * scale, color=c,
                   alpha=0.1, linewidth=0)


def plot_accuracy_vs_depth(ax, rows):
  _residual_lines(ax, rows, "test_accuracy", 100)
  _ode_lines(ax, rows, "test_accuracy", 100)
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(f"accuracy vs depth ({BAND})", fontsize=9)


def plot_accuracy_vs_nfe(ax, rows):
  for mine, style, colour, label in _stages(rows):
    _curve(ax, mine, "test_accuracy", 100, style, colour, label)
  for r, c in _odes(rows):
    if _has(r, "test_accuracy") and _has(r, "nfe_fwd"):
      acc, nfe = r["test_accuracy"], r["nfe_fwd"]
      ax.errorbar(nfe["mean"], 100 * acc["mean"], yerr=100 * np.nan_to_num(acc["std"]),
                  xerr=np.nan_to_num(nfe["std"]), fmt="*", ms=12, color=c, label=r["name"])
  ax.set_xscale("log", base=2)
  ax.set_xlabel("NFE per forward pass (residual: N)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("accuracy vs function evaluations (bars: std)", fontsize=9)


def plot_memory_vs_depth(ax, rows):
  _residual_lines(ax, rows, "peak_mb", log=True)
  _ode_lines(ax, rows, "peak_mb")
  ax.set_yscale("log")
  ax.set_ylabel("peak memory of the train step (MB)")
  ax.set_title("memory vs depth", fontsize=9)


def plot_time_vs_depth(ax, rows):
  _residual_lines(ax, rows, "epoch_s", log=True)
  _ode_lines(ax, rows, "epoch_s")
  ax.set_yscale("log")
  ax.set_ylabel("train time per epoch (s)")
  ax.set_title(f"time vs depth ({BAND})", fontsize=9)


def plot_distance_vs_h(ax, rows):
  shared = [r for r in _ok(rows) if _has(r, "distance")]
  for key, style, colour, label in (("distance", "o-", "C0", "trained weights"),
                                    ("distance_init", "s--", "C1", "initial weights")):
    _curve(ax, shared, key, 1.0, style, colour, label, x="h", log=True)
  ref = sorted((r for r in shared if _has(r, "distance_init")), key=lambda r: r["h"])
  if ref:
    h = np.array([r["h"] for r in ref])
    ax.plot(h, ref[0]["distance_init"]["mean"] * h / h[0], "k:", label="slope 1 (first order)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("step h = T/N")
  ax.set_ylabel("||Y_N - h(T)|| / ||h(T)||")
  ax.set_title(f"shared-weight stage vs ODE solution ({BAND})", fontsize=9)


def plot_smoothness_vs_depth(ax, rows):
  first = None
  for middle, colour, name in (("residual", "C1", "odenet"), ("bn_residual", "C9", "BN ResNet")):
    unshared = [r for r in _ok(rows) if r["middle"] == middle and _has(r, "dtheta_mean")]
    for key, style, label in (("dtheta_mean", "o-", "trained, mean over j"),
                              ("dtheta_max", "^-.", "trained, max over j"),
                              ("dtheta_init", "s:", "initial, mean over j")):
      _curve(ax, unshared, key, 1.0, style, colour, f"{name} {label}", log=True)
    first = first or sorted(unshared, key=lambda r: r["N"])
  if first:
    n = np.array([r["N"] for r in first], float)
    ax.plot(n, first[0]["dtheta_mean"]["mean"] * n[0] / n, "k:",
            label="slope -1 (theta smooth in t = jh)")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("N (unshared blocks)")
  ax.set_ylabel("||theta_{j+1} - theta_j|| / ||theta_j||")
  ax.set_title(f"unshared weights in depth ({BAND})", fontsize=9)


def _save(fig, path: pathlib.Path) -> None:
  for ax in fig.axes:
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  save_figure(fig, path)


PANELS = (plot_accuracy_vs_depth, plot_accuracy_vs_nfe, plot_distance_vs_h,
          plot_memory_vs_depth, plot_time_vs_depth, plot_smoothness_vs_depth)
FILES = {"accuracy": (plot_accuracy_vs_depth, plot_accuracy_vs_nfe),
         "memory": (plot_memory_vs_depth, plot_time_vs_depth),
         "distance": (plot_distance_vs_h,), "smoothness": (plot_smoothness_vs_depth,)}


def plot_study(summary: list[dict], workdir: pathlib.Path) -> None:
  """DIR/depth_study.png (all six panels) and DIR/{accuracy,memory,distance,smoothness}.png."""
  fig = Figure(figsize=(17, 9))
  axes = fig.subplots(2, 3)
  for draw, ax in zip(PANELS, axes.flat):
    draw(ax, summary)
  _save(fig, workdir / "depth_study.png")
  for name, draws in FILES.items():
    fig = Figure(figsize=(6 * len(draws), 4.5))
    axes = fig.subplots(1, len(draws), squeeze=False)
    for draw, ax in zip(draws, axes.flat):
      draw(ax, summary)
    _save(fig, workdir / f"{name}.png")
