"""`python -m train`: every bad command line, config or workdir gives one `error:` line per
problem and no traceback (exit status 2 for bad input, 1 for a failed run); `--debug` shows the
traceback; any option of the model can be set from the command line."""

import contextlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
# A tiny ResNet set up from the command line (options the demo config does not declare).
TINY = ["--config.model.name=resnet", "--config.model.options.stage_sizes=(1,)",
        "--config.model.options.widths=(4,)", "--config.model.options.stem=cifar",
        "--config.model.options.stem_width=4", "--config.batch_size=16",
        "--config.eval_batch_size=16", "--config.num_train_steps=1", "--config.plot=false"]


def train(*args, workdir="unused_workdir"):
  return subprocess.run([sys.executable, "-m", "train", "--workdir", str(workdir), *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)


def errors(result) -> list[str]:
  return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_refused(result, lines, status=2):
  assert result.returncode == status, result.stderr[-3000:]
  assert errors(result) == lines, result.stderr[-3000:]
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,lines", [
    (["--config.optimizer.learning_rate=-0.1", "--config.label_smoothing=2",
      "--config.log_every_steps=0"],
     ["error: config.optimizer.learning_rate: got -0.1; expected a number > 0",
      "error: config.label_smoothing: got 2.0; expected a number in [0, 1)",
      "error: config.log_every_steps: got 0; expected an integer >= 1"]),
    (["--config.batch_size=1.5"], ["error: config.batch_size: got '1.5'; expected an integer"]),
    (["--config.model.options.dtype=bf17"],
     ["error: config.model.options.dtype: got 'bf17'; expected a floating-point dtype name such "
      "as 'bfloat16', 'float16' or 'float32'"]),
])
def test_bad_values_are_one_line_each(args, lines):
  assert_refused(train("--config", "train/configs/demo.py", *args), lines)


@pytest.mark.parametrize("args,lines", [
    (["--config.optimizer.lerning_rate=0.1"],
     ["error: config.optimizer.lerning_rate: unknown key; did you mean learning_rate?"]),
    (["--config.optimiser.momentum=0.5", "--config.log_every_step=5"],
     ["error: config.optimiser.momentum: unknown key; did you mean optimizer.momentum?",
      "error: config.log_every_step: unknown key; did you mean log_every_steps?"]),
    (["--config.model.name=resnet", "--config.model.options.widht=4"],
     ["error: config.model.options.widht: unknown option of model 'resnet'; did you mean widths? "
      "expected some of ['bottleneck', 'dtype', 'final_survival_prob', 'remat', 'scan', "
      "'scan_unroll', 'share_weights', 'shortcut', 'stage_sizes', 'stem', 'stem_width', "
      "'step_size', 'stochastic_depth', 'widths', 'zero_init_residual']"]),
])
def test_unknown_keys_name_the_closest_one(args, lines):
  assert_refused(train("--config", "demo", *args), lines)


def test_config_by_name_or_path_and_bad_config_files(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from jaxvision.training.config import default_config\n\n\ndef get_config():\n"
                 "  c = default_config()\n  c.optimizer.lerning_rate = 0.1\n  return c\n")
  assert_refused(train(f"--config={bad}"), [f"error: --config {bad}, line 6: unknown key "
                                            "lerning_rate; did you mean learning_rate?"])
  result = train("--config", "demo.py", "--config.keep_checkpoints=0")  # a name works as a path
  assert_refused(result, ["error: config.keep_checkpoints: got 0; expected an integer >= 1"])
  result = train("--config", "no_such_config")
  assert result.returncode == 2 and len(errors(result)) == 1
  assert errors(result)[0].startswith("error: --config: got 'no_such_config'; expected a config "
                                      "file or one of ['cifar10', ")
  debug = train(f"--config={bad}", "--debug")
  assert debug.returncode != 0 and "Traceback" in debug.stderr and "lerning_rate" in debug.stderr


@contextlib.contextmanager
def filesystem(path: pathlib.Path, options: str):
  """A tmpfs mounted at `path` with `options` (root only; else the test is skipped)."""
  path.mkdir()
  mount = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                         capture_output=True)
  if mount.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
  try:
    yield path
  finally:
    subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def read_only_dir(path: pathlib.Path):
  if os.geteuid() == 0:  # root writes through permission bits: a read-only mount
    with filesystem(path, "size=1m,ro") as p:
      yield p
    return
  path.mkdir()
  path.chmod(0o555)
  try:
    yield path
  finally:
    path.chmod(0o755)


@pytest.mark.parametrize("case", ["not_a_directory", "read_only"])
def test_unwritable_workdir_is_one_line_with_cause_and_path(case, tmp_path, digits_dir):
  # The command-line model options pass the checks (status 1 from the workdir, not 2).
  args = ["--config", "demo", f"--config.dataset.data_dir={digits_dir}",
          "--config.model.options.dtype=bfloat16", "--config.num_train_steps=1"]
  if case == "not_a_directory":
    (tmp_path / "file").write_text("")
    workdir = tmp_path / "file" / "run"
    assert_refused(train(*args, workdir=workdir),
                   [f"error: Not a directory (ENOTDIR): {workdir}"], status=1)
    return
  with read_only_dir(tmp_path / "ro") as ro:
    result = train(*args, workdir=ro / "run")
    assert_refused(result, errors(result), status=1)
    assert len(errors(result)) == 1
    assert errors(result)[0] in (f"error: Read-only file system (EROFS): {ro / 'run'}",
                                 f"error: Permission denied (EACCES): {ro / 'run'}")


@pytest.mark.slow
def test_full_disk_is_one_line_with_cause_and_path(tmp_path, digits_dir):
  with filesystem(tmp_path / "full", "size=64k") as full:
    result = train("--config", "demo", f"--config.dataset.data_dir={digits_dir}", *TINY,
                   workdir=full / "run")
  assert_refused(result, [f"error: No space left on device (ENOSPC): under the workdir "
                          f"{full / 'run'}"], status=1)


@pytest.mark.slow
def test_model_options_from_the_command_line_train(tmp_path, digits_dir):
  result = train("--config", "demo", f"--config.dataset.data_dir={digits_dir}", *TINY,
                 "--config.model.options.dtype=bfloat16", workdir=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith("done: resnet on digits, 1 steps")
  run = json.loads((tmp_path / "run.json").read_text())
  assert run["model_options"] == {"stage_sizes": [1], "widths": [4], "stem": "cifar",
                                  "stem_width": 4, "dtype": "bfloat16"}
