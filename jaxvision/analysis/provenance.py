"""What produced a study's results file: versions, git revision, machine and the config."""

from __future__ import annotations

import json
import os

from jaxvision.training.workdir import git_revision


def provenance(config) -> dict:
  """Versions of jax/flax/optax, the git revision, the device and `config` (a ConfigDict)."""
  import flax
  import jax
  import optax
  return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "git": short_revision(git_revision()),
          "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()}), "
                    f"{os.cpu_count()} CPU cores", "config": config.to_dict()}


def short_revision(revision: str) -> str:
  """A `git_revision()` with its hash cut to 7 characters ("1007c8d", "1007c8d-dirty")."""
  if revision == "unknown":
    return "unknown (not a git checkout)"
  rev, dirty, _ = revision.partition("-dirty")
  return rev[:7] + dirty


def versions_line(meta: dict) -> str:
  """'jax X, flax Y, optax Z; git REV' of a `provenance` dict."""
  return f"jax {meta['jax']}, flax {meta['flax']}, optax {meta['optax']}; git {meta['git']}"


def config_block(meta: dict) -> str:
  """The config of a `provenance` dict as a markdown JSON block, introduced."""
  return ("The config that produced it:\n\n```json\n"
          + json.dumps(meta["config"], indent=1, default=str) + "\n```\n")
