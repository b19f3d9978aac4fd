"""A run's workdir: a lock that keeps it to one process, a record of what ran (the resolved
config, package versions, git revision), and the check that a resume keeps the settings that
decide the training trajectory.

The run builder, before building anything: `Checkpointer(workdir, ...)` (takes the lock,
`lock_workdir`, until its `close()`, so that a second process is refused before it writes),
then `check_resume(workdir, config, allow_changes)`, then `write_run_record(workdir, config)`.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import importlib.metadata
import json
import logging
import os
import pathlib
import platform
import socket
import subprocess

import jax

LOCK_FILE = "run.lock"
CONFIG_FILE = "config.json"
VERSIONS_FILE = "versions.json"
CHECKPOINTS = "checkpoints"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "jaxvision")
# Config keys (and everything under them) that decide the trajectory of a run.
TRAJECTORY_KEYS = ("model.name", "model.options", "dataset", "batch_size", "optimizer", "seed",
                   "task", "label_smoothing", "finetune")
NOT_TRAJECTORY_KEYS = ("dataset.data_dir",)  # where the data lives, not what it is
ALLOW_CHANGES_FLAG = "--config.resume_with_changes=True"

log = logging.getLogger("jaxvision")


class WorkdirBusy(RuntimeError):
  """Another live process holds the workdir's lock."""


class WorkdirLock:
  """An exclusive `fcntl.flock` on `workdir/run.lock`, held until `release()` or the process ends.

  The file names the holder (pid, host, start time). The kernel drops the lock of a process that
  dies, so a killed run's lock is free; a lock still held for a holder pid that is dead on this
  host (the descriptor inherited by a surviving child) is broken and taken over.
  """

  def __init__(self, workdir: str | pathlib.Path):
    self.path = pathlib.Path(workdir).absolute() / LOCK_FILE
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._file = None
    for _ in range(3):  # retried when the file was replaced between open and lock
      f = open(self.path, "a+")  # pylint: disable=consider-using-with
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _read_holder(f)
        f.close()
        if not _stale(holder):
          raise WorkdirBusy(f"workdir: {self.path.parent} is in use by {_describe(holder)} "
                            f"(lock {self.path}); wait for that run to end or stop it, or use "
                            "another --workdir") from None
        log.warning("workdir: taking over the lock of %s, which is no longer running",
                    _describe(holder))
        self.path.unlink(missing_ok=True)
        continue
      if not self.path.exists() or os.fstat(f.fileno()).st_ino != os.stat(self.path).st_ino:
        f.close()
        continue
      previous = _read_holder(f)
      if previous and previous.get("pid") != os.getpid():  # killed: its flock died with it
        log.warning("workdir: taking over the lock of %s, which ended without releasing it",
                    _describe(previous))
      f.seek(0)
      f.truncate()
      json.dump(holder_record(), f)
      f.flush()
      self._file = f
      return
    raise WorkdirBusy(f"workdir: could not lock {self.path}: it keeps being replaced")

  def release(self) -> None:
    """Clears the holder record and drops the lock (idempotent)."""
    if self._file is not None:
      self._file.truncate(0)
      self._file.close()  # closing the descriptor drops the flock
      self._file = None


def holder_record() -> dict:
  """This process as a lock holder: pid, host and start time."""
  return {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def lock_workdir(workdir: str | pathlib.Path) -> WorkdirLock | None:
  """The workdir's lock, taken by process 0 only (multi-host runs share one workdir)."""
  return WorkdirLock(workdir) if jax.process_index() == 0 else None


def _read_holder(f) -> dict | None:
  f.seek(0)
  try:
    holder = json.loads(f.read() or "null")
  except ValueError:
    return None
  return holder if isinstance(holder, dict) else None


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _stale(holder: dict | None) -> bool:
  """True if `holder` ran on this host and its pid is dead."""
  return (holder is not None and holder.get("host") == socket.gethostname()
          and isinstance(holder.get("pid"), int) and holder["pid"] != os.getpid()
          and not _alive(holder["pid"]))


def _describe(holder: dict | None) -> str:
  if not holder:
    return "another process (it did not record itself)"
  me = ""
  if holder.get("pid") == os.getpid():
    me = " (this process: a Checkpointer on it was not closed)"
  return f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')}{me}"


def has_checkpoint(workdir: str | pathlib.Path) -> bool:
  """True if `workdir/checkpoints` holds a finished checkpoint step."""
  d = pathlib.Path(workdir) / CHECKPOINTS
  return d.is_dir() and any(p.name.isdigit() and p.is_dir() for p in d.iterdir())


def config_dict(config) -> dict:
  """`config` (a ConfigDict or a dict) as plain JSON data: tuples become lists."""
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.loads(json.dumps(d, default=repr))


def package_versions() -> dict:
  """Versions of python and PACKAGES ("not installed" if missing), and the git revision."""
  out = {"python": platform.python_version()}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = "not installed"
  out["git"] = git_revision()
  return out


@functools.cache
def git_revision() -> str:
  """HEAD of the git checkout jaxvision is imported from (+"-dirty" if tracked files changed);
  "unknown" if it is not imported from a git checkout (e.g. installed in site-packages).

  Read once per process: a process that trains several runs records the revision of the code
  it loaded, not that of commits made in the checkout while it runs."""
  package = pathlib.Path(__file__).resolve().parent.parent

  def git(*args):
    return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()

  try:
    git("ls-files", "--error-unmatch", "__init__.py")  # tracked here, not just inside a checkout
    rev = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return rev + ("-dirty" if dirty else "")


def write_run_record(workdir: str | pathlib.Path, config) -> None:
  """Writes `config.json` (the resolved `config`, after command-line overrides) and
  `versions.json` (`package_versions()`) to `workdir`; process 0 only, each file atomically.

  A resume that `check_resume` lets through replaces them: they describe the settings in force.
  """
  if jax.process_index() != 0:
    return
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(workdir / CONFIG_FILE, config_dict(config))
  write_json(workdir / VERSIONS_FILE, package_versions())


def write_json(path: pathlib.Path, data) -> None:
  """Writes `data` to `path` atomically (readers see the old or the new file, never half)."""
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
  os.replace(tmp, path)


def check_resume(workdir: str | pathlib.Path, config, allow_changes: bool) -> list[str]:
  """Refuses to resume a workdir's checkpoint under other trajectory settings.

  When `workdir` has a checkpoint and a recorded `config.json`, compares the TRAJECTORY_KEYS
  of the record with `config`'s (a key the record lacks counts as its default in
  `default_config()`). Any difference raises a ValueError listing them, unless `allow_changes`
  (`config.resume_with_changes`), which logs them in one warning line. num_epochs and the
  logging, evaluation, checkpoint, plot and parallel settings may change freely.

  Returns:
    the differences, one "config.KEY: workdir has OLD, this run has NEW" line each.
  """
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not (has_checkpoint(workdir) and path.exists()):
    return []  # a fresh workdir, or one from before run records: nothing to compare
  try:
    recorded = json.loads(path.read_text())
  except ValueError as e:
    raise ValueError(f"workdir: {path} does not parse ({e}); delete it to resume without "
                     "checking the settings") from None
  changes = trajectory_changes(recorded, config_dict(config))
  if changes and not allow_changes:
    raise ValueError(f"workdir: {pathlib.Path(workdir).absolute()} holds a checkpoint trained "
                     f"with other settings ({'; '.join(changes)}); pass {ALLOW_CHANGES_FLAG} to "
                     "continue it with this run's settings, or use a new --workdir")
  if changes:
    log.warning("workdir: resuming with changed settings: %s", "; ".join(changes))
  return changes


def trajectory_changes(recorded: dict, current: dict) -> list[str]:
  """The TRAJECTORY_KEYS leaves that differ between two `config_dict`s, as messages."""
  from jaxvision.training.config import default_config  # pylint: disable=import-outside-toplevel
  old, new = _trajectory_leaves(recorded), _trajectory_leaves(current)
  defaults = _trajectory_leaves(config_dict(default_config()))
  out = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, defaults.get(key, _UNSET)), new.get(key, _UNSET)
    if a != b:
      out.append(f"config.{key}: workdir has {_show(a)}, this run has {_show(b)}")
  return out


_UNSET = object()


def _show(value) -> str:
  return "(unset)" if value is _UNSET else repr(value)


def _under(key: str, prefixes) -> bool:
  return any(key == p or key.startswith(p + ".") for p in prefixes)


def _trajectory_leaves(d: dict) -> dict:
  return {k: v for k, v in _flatten(d).items()
          if _under(k, TRAJECTORY_KEYS) and not _under(k, NOT_TRAJECTORY_KEYS)}


def _flatten(d: dict, prefix: str = "") -> dict:
  """Nested dicts as {"a.b": leaf}; an empty dict has no leaves."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out
