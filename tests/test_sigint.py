"""Ctrl-C during training (README "Checkpoints", docs/RELIABILITY.md): a SIGINT to
`python -m train` saves the state at the current step and exits with status 128 + 2; running
the same command again resumes from that step. (SIGTERM and SIGKILL: tests/test_resume.py.)"""

import os
import pathlib
import signal
import subprocess
import sys
import time


from jaxvision.training.metric_writer import read_metrics

ROOT = pathlib.Path(__file__).parent.parent
STEPS = 60  # more than run before the signal lands (a save every 5 steps): stopped mid-way


def start(workdir, data_dir, cache):
  args = [sys.executable, "-m", "train", "--config", "train/configs/demo.py",
          "--workdir", str(workdir), f"--config.dataset.data_dir={data_dir}",
          "--config.model.name=resnet", "--config.model.options.stage_sizes=(1, 1)",
          "--config.model.options.widths=(4, 8)", "--config.model.options.stem=cifar",
          "--config.model.options.stem_width=4",
          f"--config.num_train_steps={STEPS}", "--config.batch_size=16",
          "--config.checkpoint_every_steps=5", f"--config.eval_every_steps={STEPS}",
          "--config.log_every_steps=1", "--config.plot=False"]
  env = dict(os.environ, JAXVISION_COMPILATION_CACHE=str(cache))
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def saved_steps(workdir):
  d = workdir / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def test_sigint_saves_at_the_current_step_and_the_rerun_resumes_there(digits_dir, tmp_path):
  work, cache = tmp_path / "run", tmp_path / "xla_cache"
  p = start(work, digits_dir, cache)
  end = time.time() + 240
  while not saved_steps(work) and p.poll() is None and time.time() < end:
    time.sleep(0.02)
  assert saved_steps(work), f"no checkpoint: rc={p.poll()}"
  p.send_signal(signal.SIGINT)  # mid-run, after the first checkpoint
  out, err = p.communicate(timeout=120)
  assert p.returncode == 128 + signal.SIGINT, err
  assert "done:" not in out
  stopped = saved_steps(work)[-1]
  assert 5 <= stopped < STEPS
  assert f"interrupted: SIGINT at step {stopped}: checkpoint saved in {work}" in err
  assert (work / "checkpoints" / str(stopped)).is_dir()
  train = [r["step"] for r in read_metrics(work / "metrics.jsonl") if r["split"] == "train"]
  assert train == list(range(1, stopped + 1))  # logged every step up to the saved one

  p = start(work, digits_dir, cache)
  out, err = p.communicate(timeout=300)
  assert p.returncode == 0, err
  assert out.startswith(f"done: resnet on digits, {STEPS} steps")
  # The rerun began at step `stopped` + 1: each step is logged once, none repeated or skipped.
  train = [r["step"] for r in read_metrics(work / "metrics.jsonl") if r["split"] == "train"]
  assert train == list(range(1, STEPS + 1))
  assert saved_steps(work)[-1] == STEPS
