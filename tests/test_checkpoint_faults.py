"""Faults a run's workdir survives: corrupt checkpoints (resume from the newest that restores,
one warning), a kill at any moment (the best is never lost), a second process (locked out), a
failed start (no guard file), a resume under other settings (refused unless asked for)."""

import json
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxvision.training import workdir as wd
from jaxvision.training.checkpoint import Checkpointer
from jaxvision.training.config import default_config
from jaxvision.training.train_state import TrainState

ROOT = pathlib.Path(__file__).parent.parent
# After a read of a damaged file fails, orbax's pending reads end on a closed event loop.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def tiny_state(step: int = 0, value: float = 0.0) -> TrainState:
  params = {"w": jnp.full((4, 3), value, jnp.float32), "b": jnp.full((3,), value, jnp.float32)}
  return TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.1, momentum=0.9),
                           batch_stats={}).replace(step=jnp.asarray(step, jnp.int32))


def save_steps(workdir, steps, metrics=None, **kw):
  ckpt = Checkpointer(workdir, **kw)
  for s in steps:
    ckpt.save(tiny_state(s, float(s)), None if metrics is None else metrics.get(s))
  ckpt.close()


def step_dirs(d: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def restore(workdir, **kw):
  ckpt = Checkpointer(workdir, **kw)
  try:
    return ckpt.restore_latest(tiny_state())
  finally:
    ckpt.close()


def warnings_of(caplog):
  return [r.getMessage() for r in caplog.records
          if r.name == "jaxvision" and r.levelno == logging.WARNING]


@pytest.fixture(scope="module")
def three_steps(tmp_path_factory):
  """A workdir with steps 1, 2, 3, each state filled with its step number."""
  d = tmp_path_factory.mktemp("pristine")
  save_steps(d, [1, 2, 3])
  return d


def data_files(step_dir):
  return sorted((p for p in (step_dir / "default").rglob("*") if p.is_file() and "/d/" in str(p)),
                key=lambda p: -p.stat().st_size)


def _truncate(step_dir):
  for p in data_files(step_dir):
    os.truncate(p, p.stat().st_size // 3)


def _zero(step_dir):
  for p in data_files(step_dir):
    p.write_bytes(bytes(p.stat().st_size))


FAULTS = {  # fault -> (damage the step folder, words the warning gives as the reason)
    "truncated data files": (_truncate, "truncated data file"),
    "zeroed data files": (_zero, "zeroed data file default/"),
    "garbled array metadata": (lambda d: (d / "default" / "_METADATA").write_text("{not json"),
                               "garbled metadata file default/_METADATA"),
    "missing array metadata": (lambda d: (d / "default" / "_METADATA").unlink(),
                               "missing metadata file default/_METADATA"),
    "garbled step metadata": (lambda d: (d / "_CHECKPOINT_METADATA").write_text("{not json"),
                              "garbled metadata file _CHECKPOINT_METADATA"),
    "garbled metrics": (lambda d: (d / "metrics" / "metrics").write_text("\x00\x01"),
                        "garbled metadata file metrics/metrics"),
    "missing arrays folder": (lambda d: shutil.rmtree(d / "default"), "folder default/ is missing"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_corrupt_newest_checkpoint_resumes_from_the_previous_with_one_warning(
    fault, three_steps, tmp_path, caplog):
  work = tmp_path / "run"
  shutil.copytree(three_steps, work)
  damage, reason = FAULTS[fault]
  damage(work / "checkpoints" / "3")
  with caplog.at_level(logging.WARNING, logger="jaxvision"):
    ckpt = Checkpointer(work)
    state = ckpt.restore_latest(tiny_state())
  assert int(state.step) == 2
  np.testing.assert_array_equal(state.params["w"], 2.0)
  [line] = warnings_of(caplog)
  assert "skipped step 3" in line and reason in line and "\n" not in line
  assert step_dirs(work / "checkpoints") == [1, 2]
  assert step_dirs(work / "corrupt") == [3]  # set aside, not deleted
  ckpt.save(state.replace(step=3))  # the step can be saved again
  ckpt.close()
  assert step_dirs(work / "checkpoints") == [1, 2, 3]


def test_a_missing_step_metadata_file_does_not_skip_the_step(three_steps, tmp_path, caplog):
  work = tmp_path / "run"
  shutil.copytree(three_steps, work)
  (work / "checkpoints" / "3" / "_CHECKPOINT_METADATA").unlink()
  with caplog.at_level(logging.WARNING, logger="jaxvision"):
    state = restore(work)
  assert int(state.step) == 3 and not warnings_of(caplog)
  np.testing.assert_array_equal(state.params["b"], 3.0)


def test_two_corrupt_steps_are_skipped_and_none_restoring_moves_nothing(three_steps, tmp_path,
                                                                         caplog):
  work = tmp_path / "run"
  shutil.copytree(three_steps, work)
  _zero(work / "checkpoints" / "3")
  _truncate(work / "checkpoints" / "2")
  with caplog.at_level(logging.WARNING, logger="jaxvision"):
    assert int(restore(work).step) == 1
  assert [re.search(r"skipped step (\d)", w)[1] for w in warnings_of(caplog)] == ["3", "2"]

  work = tmp_path / "all_bad"
  shutil.copytree(three_steps, work)
  for s in (1, 2, 3):
    _zero(work / "checkpoints" / str(s))
  with pytest.raises(RuntimeError, match=r"no checkpoint in .* restores \(step 3: zeroed data"):
    restore(work)
  assert step_dirs(work / "checkpoints") == [1, 2, 3]


def test_one_save_writes_state_and_metrics_and_the_best_outlives_the_last_n(tmp_path):
  acc = {1: 0.5, 4: 0.5, 5: 0.3, 6: 0.9}
  ckpt = Checkpointer(tmp_path, keep=2)
  for s in range(1, 6):
    ckpt.save(tiny_state(s, s), None if s not in acc else {"accuracy": acc[s], "loss": 1.0})
  ckpt.manager.wait_until_finished()
  # The best is a step like any other, in one atomically finalised folder with its metrics.
  assert step_dirs(tmp_path / "checkpoints") == [1, 4, 5]
  assert json.loads((tmp_path / "checkpoints/1/metrics/metrics").read_text())["accuracy"] == 0.5
  assert not (tmp_path / "best").exists()
  assert ckpt.best_metrics() == (1, {"accuracy": 0.5, "loss": 1.0})  # 4 only equals it
  ckpt.save(tiny_state(6, 6), {"accuracy": acc[6]})
  ckpt.close()  # the old best goes only after the better step is complete
  assert step_dirs(tmp_path / "checkpoints") == [5, 6]
  ckpt = Checkpointer(tmp_path, keep=2, best_metric="loss", best_mode="min")
  assert ckpt.best_metrics() == (5, {"accuracy": 0.3, "loss": 1.0})  # 6 has no loss
  ckpt.close()


KILLED_SAVER = """
import sys, time
import jax.numpy as jnp, optax
from jaxvision.training.checkpoint import Checkpointer
from jaxvision.training.train_state import TrainState
ckpt = Checkpointer(sys.argv[1], keep=1)
state = TrainState.create(apply_fn=None, params={"w": jnp.zeros((64, 64))}, tx=optax.sgd(0.1),
                          batch_stats={})
start = ckpt.restore_latest(state).step + 1
print("ready", flush=True)
for step in range(int(start), 10_000):
  ckpt.save(state.replace(step=step), {"accuracy": (step * 37 % 101) / 100})
"""


def accuracy(step):
  return (step * 37 % 101) / 100


@pytest.mark.slow
def test_kills_at_random_moments_never_lose_the_best(tmp_path):
  """Every step is evaluated; after each SIGKILL the best kept is the best of all steps saved."""
  rs = np.random.RandomState(0)
  for _ in range(3):
    p = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(tmp_path)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(rs.uniform(0.5, 2.0))
    p.send_signal(signal.SIGKILL)
    p.wait()
    ckpt = Checkpointer(tmp_path, keep=1)
    latest = ckpt.latest_step()
    best_step, best = ckpt.best_metrics()
    ckpt.close()
    assert latest > 1
    assert best_step == max(range(1, latest + 1), key=accuracy), (latest, best_step)
    assert best == {"accuracy": accuracy(best_step)}


@pytest.mark.parametrize("keep", [0, -2])
def test_keeping_no_checkpoints_is_refused(keep, tmp_path):
  with pytest.raises(ValueError, match=rf"config.keep_checkpoints: got {keep}; expected an int"):
    Checkpointer(tmp_path, keep=keep)
  assert not (tmp_path / "checkpoints").exists()


HOLDER = """
import sys, time
from jaxvision.training.workdir import WorkdirLock
lock = WorkdirLock(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_a_workdir_held_by_a_live_process_is_refused_naming_it(tmp_path):
  p = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT,
                       stdout=subprocess.PIPE, text=True)
  try:
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(wd.WorkdirBusy, match=rf"is in use by pid {p.pid} on host "
                                             rf"{re.escape(socket.gethostname())} since \d{{4}}-"):
      Checkpointer(tmp_path)
  finally:
    p.kill()
    p.wait()
  Checkpointer(tmp_path).close()  # the kernel dropped the dead holder's lock


def test_one_process_holds_a_workdir_once_until_close(tmp_path):
  ckpt = Checkpointer(tmp_path)
  with pytest.raises(wd.WorkdirBusy, match=r"\(this process: a Checkpointer on it was not closed"):
    Checkpointer(tmp_path)
  assert json.loads((tmp_path / wd.LOCK_FILE).read_text())["pid"] == os.getpid()
  ckpt.close()
  assert (tmp_path / wd.LOCK_FILE).read_text() == ""  # released: no holder
  Checkpointer(tmp_path).close()
  Checkpointer(tmp_path, lock=False).close()


def dead_pid() -> int:
  p = subprocess.Popen([sys.executable, "-c", "pass"])
  p.wait()
  return p.pid


def test_stale_locks_are_taken_over(tmp_path, caplog):
  lock = tmp_path / wd.LOCK_FILE
  dead = {"pid": dead_pid(), "host": socket.gethostname(), "started": "2020-01-01T00:00:00"}
  # Killed holder: the kernel dropped its flock, its record stayed.
  lock.write_text(json.dumps(dead))
  with caplog.at_level(logging.WARNING, logger="jaxvision"):
    Checkpointer(tmp_path).close()
  assert f"taking over the lock of pid {dead['pid']}" in warnings_of(caplog)[0]
  # Dead holder whose descriptor (and flock) lives on, e.g. in a child it forked.
  import fcntl
  with open(lock, "w") as inherited:
    inherited.write(json.dumps(dead))
    inherited.flush()
    fcntl.flock(inherited, fcntl.LOCK_EX | fcntl.LOCK_NB)
    ckpt = Checkpointer(tmp_path)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    ckpt.close()
  assert len(warnings_of(caplog)) == 2


RUN = {"model": "cifar_resnet20", "dataset": "digits"}


def test_the_guard_file_waits_for_the_first_checkpoint(tmp_path):
  ckpt = Checkpointer(tmp_path)
  ckpt.check_run({"model": "wrong_model", "dataset": "digits"})
  ckpt.close()  # failed at start-up: no checkpoint, so no guard file
  assert not (tmp_path / "run.json").exists()
  ckpt = Checkpointer(tmp_path)
  ckpt.check_run(RUN)  # the intended command is not refused
  ckpt.save(tiny_state(4))
  assert json.loads((tmp_path / "run.json").read_text()) == RUN
  ckpt.close()
  ckpt = Checkpointer(tmp_path)
  with pytest.raises(ValueError, match=r"another run \(model: workdir has 'cifar_resnet20', this "
                                       r"run has 'resnet50'\)"):
    ckpt.check_run({**RUN, "model": "resnet50"})
  ckpt.close()


def test_workdirs_of_the_old_layout_resume_and_keep_their_best(tmp_path):
  options = lambda **kw: ocp.CheckpointManagerOptions(create=True, **kw)
  latest = ocp.CheckpointManager(tmp_path / "checkpoints", options=options(max_to_keep=2))
  best = ocp.CheckpointManager(tmp_path / "best", options=options(
      max_to_keep=1, best_fn=lambda m: m["accuracy"]))
  for s in (4, 8, 12):
    tree = {"step": np.asarray(s, np.int32), "params": tiny_state(0, s).params,
            "batch_stats": {}, "opt_state": tiny_state().opt_state}
    latest.save(s, args=ocp.args.StandardSave(tree))
    if s == 4:
      best.save(s, args=ocp.args.StandardSave(tree), metrics={"accuracy": 0.7})
  for m in (latest, best):
    m.close()
  ckpt = Checkpointer(tmp_path)
  state = ckpt.restore_latest(tiny_state())
  assert int(state.step) == 12 and float(state.params["w"][0, 0]) == 12.0
  assert ckpt.best_metrics() == (4, {"accuracy": 0.7})
  ckpt.save(tiny_state(16, 16), {"accuracy": 0.8})
  assert ckpt.best_metrics() == (16, {"accuracy": 0.8})
  ckpt.close()


def config_with(**changes):
  c = default_config()
  for key, value in changes.items():
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def test_the_run_record_holds_the_resolved_config_versions_and_revision(tmp_path):
  c = config_with(**{"optimizer.learning_rate": 0.05, "model.options.dtype": "bfloat16"})
  wd.write_run_record(tmp_path, c)
  recorded = json.loads((tmp_path / wd.CONFIG_FILE).read_text())
  assert recorded["optimizer"]["learning_rate"] == 0.05
  assert recorded["model"]["options"] == {"dtype": "bfloat16"}
  assert recorded["optimizer"]["step_epochs"] == [0.5, 0.75]
  versions = json.loads((tmp_path / wd.VERSIONS_FILE).read_text())
  assert set(versions) == {"python", *wd.PACKAGES, "git"}
  assert versions["jax"] == __import__("jax").__version__
  assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", versions["git"])


def test_the_revision_is_read_once_per_process_and_studies_name_it_short(monkeypatch):
  from jaxvision.analysis.provenance import provenance, short_revision
  calls = []
  real_run = subprocess.run
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
  wd.git_revision.cache_clear()
  first = wd.git_revision()
  asked = len(calls)
  assert asked > 0 and wd.git_revision() == first and len(calls) == asked
  assert short_revision("0123456789" * 4) == "0123456"
  assert short_revision("0123456789" * 4 + "-dirty") == "0123456-dirty"
  assert short_revision("unknown") == "unknown (not a git checkout)"
  assert provenance(default_config())["git"] == short_revision(first)


def test_a_resume_under_other_trajectory_settings_is_refused_unless_asked_for(tmp_path, caplog):
  wd.write_run_record(tmp_path, default_config())
  changed = config_with(**{"optimizer.learning_rate": 0.05, "batch_size": 64,
                           "model.options.dtype": "bfloat16"})
  assert wd.check_resume(tmp_path, changed, allow_changes=False) == []  # no checkpoint yet
  save_steps(tmp_path, [10])
  with pytest.raises(ValueError) as e:
    wd.check_resume(tmp_path, changed, allow_changes=False)
  message = str(e.value)
  for line in ("config.batch_size: workdir has 128, this run has 64",
               "config.optimizer.learning_rate: workdir has 0.1, this run has 0.05",
               "config.model.options.dtype: workdir has (unset), this run has 'bfloat16'",
               "--config.resume_with_changes=True"):
    assert line in message
  # Extending training, moving the data, evaluating or checkpointing more often: not refused.
  same_trajectory = config_with(**{"num_epochs": 90.0, "dataset.data_dir": "/elsewhere",
                                   "eval_every_steps": 5, "checkpoint_every_steps": 5,
                                   "log_every_steps": 1, "plot": False, "parallel": "pmap",
                                   "eval_batch_size": 512, "keep_checkpoints": 1})
  assert wd.check_resume(tmp_path, same_trajectory, allow_changes=False) == []
  with caplog.at_level(logging.WARNING, logger="jaxvision"):
    changes = wd.check_resume(tmp_path, changed, allow_changes=True)
  assert len(changes) == 3
  [line] = warnings_of(caplog)
  assert "resuming with changed settings: config.batch_size: workdir has 128" in line


def test_a_record_missing_a_newer_key_counts_it_as_its_default(tmp_path):
  record = wd.config_dict(default_config())
  del record["optimizer"]["grad_clip_norm"]
  (tmp_path / wd.CONFIG_FILE).write_text(json.dumps(record))
  save_steps(tmp_path, [1])
  assert wd.check_resume(tmp_path, default_config(), allow_changes=False) == []
  assert wd.check_resume(tmp_path, config_with(**{"optimizer.grad_clip_norm": 1.0}), True) == [
      "config.optimizer.grad_clip_norm: workdir has 0.0, this run has 1.0"]
