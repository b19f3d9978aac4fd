"""Plots of the ODE-vs-ResNet depth study (jaxvision.analysis.depth_study) from its result
rows: accuracy against depth and against function evaluations, memory against depth, and the
distance of a shared-weight stage to the ODE solution against the step h."""

from __future__ import annotations

import pathlib

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # no pyplot: the caller's backend (inline plots) untouched

from jaxvision.plots.figure import save_figure


def _ok(rows):
  return [r for r in rows if not r.get("error")]


def _residual_lines(ax, rows, key: str, scale: float = 1.0):
  for shared, style in ((True, "o-"), (False, "s--")):
    pts = sorted((r["N"], r[key] * scale) for r in _ok(rows)
                 if r["middle"] == "residual" and r["shared"] == shared and r.get(key) is not None)
    if pts:
      ax.plot(*zip(*pts), style, label=f"residual, {'shared' if shared else 'unshared'} weights")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("N (blocks; h = T/N)")


def _ode_lines(ax, rows, key: str, scale: float = 1.0):
  colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][2:]
  for r, c in zip([r for r in _ok(rows) if r["middle"] == "ode"], colors):
    if r.get(key) is not None:
      ax.axhline(r[key] * scale, ls=":", color=c, label=f"{r['name']} (NFE {r['nfe_fwd']:.0f})")


def plot_accuracy_vs_depth(ax, rows):
  _residual_lines(ax, rows, "test_accuracy", 100)
  _ode_lines(ax, rows, "test_accuracy", 100)
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("accuracy vs depth")


def plot_accuracy_vs_nfe(ax, rows):
  for shared, style in ((True, "o-"), (False, "s--")):
    pts = sorted((r["nfe_fwd"], 100 * r["test_accuracy"]) for r in _ok(rows)
                 if r["middle"] == "residual" and r["shared"] == shared)
    if pts:
      ax.plot(*zip(*pts), style, label=f"residual, {'shared' if shared else 'unshared'} weights")
  odes = [r for r in _ok(rows) if r["middle"] == "ode"]
  for r, c in zip(odes, matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][2:]):
    ax.plot(r["nfe_fwd"], 100 * r["test_accuracy"], "*", ms=12, color=c, label=r["name"])
  ax.set_xscale("log", base=2)
  ax.set_xlabel("NFE per forward pass (residual: N)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("accuracy vs function evaluations")


def plot_memory_vs_depth(ax, rows):
  _residual_lines(ax, rows, "peak_mb")
  _ode_lines(ax, rows, "peak_mb")
  ax.set_yscale("log")
  ax.set_ylabel("peak memory of the train step (MB)")
  ax.set_title("memory vs depth")


def plot_distance_vs_h(ax, rows):
  shared = sorted((r for r in _ok(rows) if r.get("distance") is not None), key=lambda r: r["h"])
  for key, style, label in (("distance", "o-", "trained weights"),
                            ("distance_init", "s--", "initial weights")):
    pts = [(r["h"], r[key]) for r in shared if r.get(key)]
    if pts:
      ax.plot(*zip(*pts), style, label=label)
  if shared and shared[0].get("distance_init"):
    h = np.array([r["h"] for r in shared])
    ax.plot(h, shared[0]["distance_init"] * h / h[0], "k:", label="slope 1 (first order)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("step h = T/N")
  ax.set_ylabel("||Y_N - h(T)|| / ||h(T)||")
  ax.set_title("shared-weight stage vs ODE solution")


def _save(fig, path: pathlib.Path) -> None:
  for ax in fig.axes:
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  save_figure(fig, path)


def plot_study(rows: list[dict], workdir: pathlib.Path) -> None:
  """DIR/depth_study.png (all four panels) and DIR/{accuracy,memory,distance}.png."""
  panels = (plot_accuracy_vs_depth, plot_accuracy_vs_nfe, plot_memory_vs_depth, plot_distance_vs_h)
  fig = Figure(figsize=(12, 9))
  axes = fig.subplots(2, 2)
  for draw, ax in zip(panels, axes.flat):
    draw(ax, rows)
  _save(fig, workdir / "depth_study.png")
  for name, draws in (("accuracy", panels[:2]), ("memory", panels[2:3]), ("distance", panels[3:])):
    fig = Figure(figsize=(6 * len(draws), 4.5))
    axes = fig.subplots(1, len(draws), squeeze=False)
    for draw, ax in zip(draws, axes.flat):
      draw(ax, rows)
    _save(fig, workdir / f"{name}.png")
