"""The CLI survives interruption: SIGTERM saves and stops, SIGKILL loses nothing past the last
complete checkpoint, and the resumed run ends with the parameters of an uninterrupted one."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxvision.training.metric_writer import read_metrics

ROOT = pathlib.Path(__file__).parent.parent
STEPS = 24


@pytest.fixture(scope="module")
def cli(digits_dir, tmp_path_factory):
  cache = tmp_path_factory.mktemp("xla_cache")

  def start(workdir):
    args = [sys.executable, "-m", "train", "--config", "train/configs/demo.py",
            "--workdir", str(workdir), f"--config.dataset.data_dir={digits_dir}",
            f"--config.num_train_steps={STEPS}", "--config.batch_size=32",
            "--config.checkpoint_every_steps=4", "--config.eval_every_steps=12",
            "--config.plot=False"]
    env = dict(os.environ, JAXVISION_COMPILATION_CACHE=str(cache))
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

  return start


def saved_steps(workdir):
  d = workdir / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def wait_for_checkpoint_after(proc, workdir, step, timeout=120):
  end = time.time() + timeout
  while time.time() < end and proc.poll() is None:
    if any(s > step for s in saved_steps(workdir)):
      return
    time.sleep(0.02)
  raise AssertionError(f"no checkpoint after step {step}: rc={proc.poll()} "
                       f"{proc.stderr.read() if proc.poll() is not None else ''}")


def assert_keeps_last_and_best(workdir):
  """The last 3 checkpoints are kept, and the best by eval accuracy besides them."""
  evals = [r for r in read_metrics(workdir / "metrics.jsonl") if r["split"] == "eval"]
  assert [r["step"] for r in evals] == [12, 24]
  best = max(evals, key=lambda r: r["accuracy"])["step"]
  assert saved_steps(workdir) == sorted({16, 20, 24, best})


def final_params(workdir):
  tree = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(STEPS) / "default")
  return tree["params"]


def test_sigterm_and_sigkill_resume_to_the_uninterrupted_result(cli, tmp_path):
  ref = cli(tmp_path / "ref")
  out, err = ref.communicate(timeout=300)
  assert ref.returncode == 0, err
  assert out.startswith("done: cifar_resnet20 on digits, 24 steps")
  assert_keeps_last_and_best(tmp_path / "ref")

  work = tmp_path / "interrupted"
  p = cli(work)
  wait_for_checkpoint_after(p, work, 0)
  p.send_signal(signal.SIGTERM)
  _, err = p.communicate(timeout=120)
  assert p.returncode == 128 + signal.SIGTERM, err
  stopped = saved_steps(work)[-1]
  assert f"SIGTERM at step {stopped}: checkpoint saved" in err
  assert stopped < STEPS

  p = cli(work)
  wait_for_checkpoint_after(p, work, stopped)
  p.kill()  # SIGKILL: no chance to save
  p.communicate(timeout=60)
  assert p.returncode == -signal.SIGKILL
  killed = saved_steps(work)[-1]
  assert stopped < killed < STEPS, (stopped, killed)

  p = cli(work)
  out, err = p.communicate(timeout=300)
  assert p.returncode == 0, err
  for a, b in zip(jax.tree.leaves(final_params(tmp_path / "ref")), jax.tree.leaves(final_params(work))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
