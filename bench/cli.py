"""Command-line helpers shared by the bench scripts (no JAX import: vs_torch.py sets XLA_FLAGS
in its workers before JAX is imported)."""

from __future__ import annotations

import ast
import os


def load() -> str:
  """The 1/5/15-minute load averages, to print next to every timing on a shared machine."""
  return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def parse_options(pairs: list[str]) -> dict:
  """["key=value", ...] -> {key: value}, values as Python literals where they parse."""
  options = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or not key:
      raise ValueError(f"--option: expected key=value, got {pair!r}")
    try:
      options[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      options[key] = value
  return options
