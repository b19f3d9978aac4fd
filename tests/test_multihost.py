"""Multi-host data parallelism: two processes on localhost (2 CPU host devices each) train
together through `jax.distributed` and end where one process holding all 4 devices ends; only
process 0 writes checkpoints and metrics, and every process restores them."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxvision.training import distributed
from jaxvision.training.config import default_config
from jaxvision.training.metric_writer import read_metrics

HERE = pathlib.Path(__file__).parent
STEPS = 4  # multihost_worker.STEPS


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(args, devices, env):
  # Unoptimised XLA codegen halves compile time; both runs share it, so they still agree.
  env = dict(env, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count="
             f"{devices} --xla_backend_optimization_level=0")
  return subprocess.Popen([sys.executable, str(HERE / "multihost_worker.py"), *args], env=env,
                          cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


@pytest.fixture(scope="module")
def runs(digits_dir, tmp_path_factory):
  """Both processes of the two-process run and the one-process reference, run concurrently."""
  root = tmp_path_factory.mktemp("multihost")
  address = f"127.0.0.1:{free_port()}"
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_", "OMPI_"))}
  env["JAX_COORDINATOR_BIND_ADDRESS"] = address  # loopback only
  common = ["--data_dir", digits_dir]
  procs = [launch([*common, "--workdir", str(root / "two"), "--coordinator", address,
                   "--num_processes", "2", "--process_id", str(i),
                   "--compilation_cache", str(root / "xla_two")], 2, env) for i in range(2)]
  procs.append(launch([*common, "--workdir", str(root / "one"), "--emulate_hosts", "2",
                       "--compilation_cache", str(root / "xla_one")], 4, env))
  outs = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=300)
      assert p.returncode == 0, f"worker {p.args[2:]} failed:\n{err[-4000:]}"
      outs.append(json.loads(out.strip().splitlines()[-1]))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  return {"workers": outs[:2], "reference": outs[2], "two": root / "two", "one": root / "one"}


def checkpoint(workdir, step=STEPS):
  return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "default")


def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_two_processes_see_all_four_devices(runs):
  assert [(w["process_index"], w["process_count"], w["devices"], w["local_devices"])
          for w in runs["workers"]] == [(0, 2, 4, 2), (1, 2, 4, 2)]
  ref = runs["reference"]
  assert (ref["process_count"], ref["devices"]) == (1, 4)


def test_two_processes_end_with_the_parameters_of_one_process(runs):
  two, one = checkpoint(runs["two"]), checkpoint(runs["one"])
  assert int(two["step"]) == int(one["step"]) == STEPS
  moved = max_diff(two["params"], checkpoint(runs["two"], 2)["params"])
  assert moved > 1e-3  # training changed the parameters between checkpoints
  for part in ("params", "batch_stats", "opt_state"):
    assert max_diff(two[part], one[part]) < 1e-5, part


def test_metrics_are_global_and_written_once(runs):
  two, one = [read_metrics(runs[k] / "metrics.jsonl") for k in ("two", "one")]
  keys = [(r["step"], r["split"]) for r in two]
  assert keys == [(r["step"], r["split"]) for r in one]  # no row written twice
  assert keys.count((STEPS, "eval")) == 1 and len(keys) == STEPS + 2
  for a, b in zip(two, one):
    for k in b:
      if k not in ("step", "split", "images_per_s"):  # a timing: machine-dependent
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=f"{k} at {a['step']}")
  for w in runs["workers"]:  # every process got the global eval metrics
    np.testing.assert_allclose(w["trained"]["loss"], runs["reference"]["trained"]["loss"],
                               rtol=1e-5)
  # One TensorBoard event file per fit call, as in the one-process run.
  events = [len(list((runs[k] / "tensorboard").iterdir())) for k in ("two", "one")]
  assert events == [2, 2]


def test_only_process_zero_writes_checkpoints(runs):
  written = {p.name for p in runs["two"].rglob("ocdbt.process_*")}
  assert written == {"ocdbt.process_0"}
  assert sorted(int(p.name) for p in (runs["two"] / "checkpoints").iterdir()) == [2, 4]
  assert (runs["two"] / "summary.json").exists() and (runs["two"] / "run.json").exists()


def test_every_process_restores_the_checkpoint(runs):
  # The second fit resumes at the last step: each process restores the state process 0 saved
  # and evaluates it to the metrics it ended training with.
  for w in runs["workers"]:
    for k, v in w["trained"].items():
      assert w["resumed"][k] == pytest.approx(v, rel=1e-6), k


def test_initialize_is_a_no_op_on_one_process(monkeypatch):
  for k in [k for k in os.environ if k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR"))]:
    monkeypatch.delenv(k)
  assert distributed.initialize(default_config().distributed) is False
  assert distributed.initialize() is False
  assert distributed.is_primary()


def test_initialize_passes_the_config_or_lets_jax_detect_the_cluster(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  for k in [k for k in os.environ if k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR"))]:
    monkeypatch.delenv(k)
  c = default_config().distributed
  c.coordinator_address, c.num_processes, c.process_id = "10.0.0.1:1234", 4, 3
  assert distributed.initialize(c) is True
  assert calls.pop() == dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3,
                             local_device_ids=None)
  # A task of a 2-task SLURM step: JAX reads the rest from the environment.
  for k, v in dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="node[1-2]", SLURM_NTASKS="2",
                   SLURM_PROCID="1", SLURM_LOCALID="0").items():
    monkeypatch.setenv(k, v)
  assert distributed.initialize(default_config().distributed) is True
  assert calls.pop() == dict(coordinator_address=None, num_processes=None, process_id=None,
                             local_device_ids=None)
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert distributed.initialize(default_config().distributed) is False
  off = default_config().distributed
  off.initialize, off.num_processes = "off", 2
  assert distributed.initialize(off) is False and not calls


@pytest.mark.parametrize("key,value,match", [
    ("initialize", "yes", r"initialize: expected one of \('auto', 'on', 'off'\), got 'yes'"),
    ("coordinator_address", "10.0.0.1", r"coordinator_address: expected 'host:port'.*'10.0.0.1'"),
    ("num_processes", -2, r"num_processes: expected an int >= 0 .*got -2"),
    ("process_id", 2, r"process_id: 2 is not below num_processes 2"),
    ("local_device_ids", (0, -1), r"local_device_ids: expected device ids .*\(0, -1\)"),
])
def test_bad_distributed_settings_are_named(key, value, match):
  c = default_config().distributed
  c.num_processes = 2
  c[key] = value
  with pytest.raises(ValueError, match=match):
    distributed.initialize(c)
