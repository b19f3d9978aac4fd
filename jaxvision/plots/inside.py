"""Looking inside a trained network (jaxvision.analysis.visualize draws with these): the first
layer's filters as a grid of images, per-stage feature maps of one image, an ODE block's state
trajectory h(t), and NFE against training step. Numpy arrays in, PNG files out."""

from __future__ import annotations

import math
import pathlib

import numpy as np
from matplotlib.figure import Figure  # no pyplot: the caller's backend (inline plots) untouched

from jaxvision.plots.figure import save_figure


def _unit(x: np.ndarray) -> np.ndarray:
  """`x` scaled to [0, 1] by its own min and max (a constant array: 0.5 everywhere)."""
  x = np.asarray(x, np.float64)
  lo, hi = x.min(), x.max()
  return np.full_like(x, 0.5) if hi - lo < 1e-12 else (x - lo) / (hi - lo)


def filter_images(filters: np.ndarray) -> np.ndarray:
  """Filters [N, kh, kw, C] as images [N, kh, kw, 3] (C = 3: RGB) or [N, kh, kw] (otherwise grey:
  the mean over the input channels), each normalised to [0, 1] on its own."""
  filters = np.asarray(filters, np.float64)
  if filters.ndim != 4:
    raise ValueError(f"filters: expected [N, kh, kw, C], got shape {filters.shape}")
  if filters.shape[-1] != 3:
    filters = filters.mean(axis=-1)
  return np.stack([_unit(f) for f in filters])


def plot_filters(filters: np.ndarray, out: str | pathlib.Path, title: str = "",
                 max_filters: int = 96) -> pathlib.Path:
  """A grid of the first `max_filters` first-layer filters [N, kh, kw, C], each normalised to
  [0, 1] (RGB when C = 3, grey otherwise) as in Krizhevsky et al. (2012), Fig. 3; saves a PNG."""
  images = filter_images(filters)[:max_filters]
  n = len(images)
  cols = min(n, max(8, math.ceil(math.sqrt(n))))
  rows = math.ceil(n / cols)
  fig = Figure(figsize=(0.8 * cols + 0.4, 0.8 * rows + 0.8))
  axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
  for i, ax in enumerate(axes):
    ax.set_axis_off()
    if i < n:
      ax.imshow(images[i], cmap=None if images[i].ndim == 3 else "gray", vmin=0, vmax=1,
                interpolation="nearest")
  kh, kw, c = np.shape(filters)[1:]
  fig.suptitle(title or f"first-layer filters ({n} of {len(filters)}, {kh}x{kw}x{c})")
  return save_figure(fig, out, tight=False)


def top_channels(fmap: np.ndarray, k: int, order: str = "first") -> np.ndarray:
  """Indices of `k` channels of a map [H, W, C]: the first k, or ("mean") the k with the largest
  mean activation, largest first."""
  c = fmap.shape[-1]
  if order == "first":
    return np.arange(min(k, c))
  if order == "mean":
    return np.argsort(-np.asarray(fmap).mean(axis=(0, 1)), kind="stable")[:k]
  raise ValueError(f"order: expected 'first' or 'mean', got {order!r}")


def plot_feature_maps(maps: list[np.ndarray], out: str | pathlib.Path, *, names=None,
                      image: np.ndarray | None = None, k: int = 8, order: str = "first",
                      title: str = "") -> pathlib.Path:
  """One row per stage: `k` channels of each map [H, W, C] of one image (`order` "first" or
  "mean", see `top_channels`), each channel on its own colour scale; `image` [H, W, C] (if given)
  heads the first column. Saves a PNG."""
  names = list(names) if names is not None else [f"stage {i}" for i in range(len(maps))]
  lead = 1 if image is not None else 0
  k = min(k, max(np.shape(m)[-1] for m in maps))
  fig = Figure(figsize=(1.3 * (k + lead) + 1.2, 1.4 * len(maps) + 0.8))
  axes = fig.subplots(len(maps), k + lead, squeeze=False)
  for r, (row, fmap, name) in enumerate(zip(axes, maps, names)):
    fmap = np.asarray(fmap, np.float32)
    for ax in row:
      ax.set_axis_off()
    if lead and r == 0:
      row[0].imshow(_show_image(image), cmap="gray", interpolation="nearest")
      row[0].set_title("image", fontsize=8)
    for ax, ch in zip(row[lead:], top_channels(fmap, k, order)):
      ax.imshow(fmap[..., ch], cmap="viridis", interpolation="nearest")
      ax.set_title(f"ch {ch}", fontsize=7)
    row[lead].text(-0.1, 0.5, f"{name}\n{fmap.shape[0]}x{fmap.shape[1]}x{fmap.shape[2]}",
                   transform=row[lead].transAxes, ha="right", va="center", fontsize=8)
  fig.suptitle(title or f"feature maps of one image ({'first' if order == 'first' else 'top'} "
                        f"{k} channels per stage)")
  return save_figure(fig, out)


def _show_image(image: np.ndarray) -> np.ndarray:
  image = _unit(image)
  return image[..., 0] if image.shape[-1] == 1 else image[..., :3]


def pca_2d(states: np.ndarray) -> np.ndarray:
  """Rows of `states` [M, D] projected on their first two principal components: [M, 2]."""
  x = np.asarray(states, np.float64)
  x = x - x.mean(axis=0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  proj = x @ vt[:2].T
  return np.pad(proj, [(0, 0), (0, 2 - proj.shape[1])])  # D or M < 2: zeros


def plot_ode_trajectory(ts: np.ndarray, hs: np.ndarray, out: str | pathlib.Path, *,
                        labels=None, channels: int = 6, title: str = "") -> pathlib.Path:
  """An ODE block's state h(t) [T, B, H, W, C] at times `ts` [T] for B images (named `labels`):
  ||h(t)|| per image, the trajectories projected on the two principal components of all the
  states, and the spatial mean of the first `channels` channels of the first image against t.
  Saves a PNG."""
  ts, hs = np.asarray(ts, np.float64), np.asarray(hs, np.float64)
  if hs.ndim != 5 or hs.shape[0] != ts.shape[0]:
    raise ValueError(f"hs: expected [T={ts.shape[0]}, B, H, W, C], got shape {hs.shape}")
  n_t, n_b = hs.shape[:2]
  labels = list(labels) if labels is not None else [f"image {i}" for i in range(n_b)]
  flat = hs.reshape(n_t, n_b, -1)
  fig = Figure(figsize=(15, 4.2))
  a, b, c = fig.subplots(1, 3)
  for i in range(n_b):
    a.plot(ts, np.linalg.norm(flat[:, i], axis=-1), "o-", markersize=2.5, label=labels[i])
  a.set_xlabel("t")
  a.set_ylabel("||h(t)||")
  a.set_title("state norm")
  proj = pca_2d(flat.transpose(1, 0, 2).reshape(n_b * n_t, -1)).reshape(n_b, n_t, 2)
  for i, p in enumerate(proj):
    line, = b.plot(p[:, 0], p[:, 1], "-", label=labels[i])
    b.plot(*p[0], "o", color=line.get_color())
    b.plot(*p[-1], "s", color=line.get_color())
  b.set_xlabel("PC 1")
  b.set_ylabel("PC 2")
  b.set_title(f"trajectories (PCA; o t={ts[0]:g}, s t={ts[-1]:g})")
  means = hs[:, 0].mean(axis=(1, 2))  # [T, C]
  for ch in range(min(channels, means.shape[-1])):
    c.plot(ts, means[:, ch], label=f"ch {ch}")
  c.set_xlabel("t")
  c.set_ylabel("mean over space")
  c.set_title(f"channels of {labels[0]}")
  for ax in (a, b, c):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(title or "ODE block state h(t)")
  return save_figure(fig, out)


def plot_nfe(steps: np.ndarray, nfe: np.ndarray, out: str | pathlib.Path,
             title: str = "") -> pathlib.Path:
  """Forward NFE of the ODE block(s) against training step; saves a PNG."""
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  ax.plot(steps, nfe, "o-", markersize=3)
  ax.set_xlabel("training step")
  ax.set_ylabel("NFE (forward, mean over the log window)")
  ax.grid(alpha=0.3)
  ax.set_title(title or "function evaluations during training")
  return save_figure(fig, out)
