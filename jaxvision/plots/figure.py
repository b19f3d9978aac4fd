"""Saving a figure the one way every plot here does."""

from __future__ import annotations

import pathlib

from matplotlib.figure import Figure  # no pyplot: the caller's backend (inline plots) untouched


def save_figure(fig: Figure, out: str | pathlib.Path, title: str = "", *, tight: bool = True,
                dpi: int = 100) -> pathlib.Path:
  """Adds `title` above the panels, lays them out (`tight`) and writes `out` (a PNG)."""
  if title:
    fig.suptitle(title)
  if tight:
    fig.tight_layout()
  out = pathlib.Path(out)
  fig.savefig(out, dpi=dpi)
  return out
