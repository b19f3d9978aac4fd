"""The training loop's parts: device prefetch, the metric window, raw images normalised on the
device exactly as the host pipeline does, and a loop that syncs only at log/eval/save steps."""

import time

import jax
import numpy as np
import pytest

from jaxvision import data
from jaxvision.data.config import default_dataset_config
from jaxvision.training import fit as fit_lib
from jaxvision.training.metric_window import MetricWindow
from jaxvision.training.normalize import normalize_images
from jaxvision.training.config import default_config
from jaxvision.training.metric_writer import METRICS_FILE, read_metrics
from jaxvision.training.prefetch import prefetch_to_device
from jaxvision.training.run_clock import ELAPSED_FILE, read_elapsed


def test_prefetch_puts_size_batches_ahead_in_order():
  put = []
  out = prefetch_to_device(iter(range(5)), lambda b: put.append(b) or 10 * b, size=2)
  assert put == []  # nothing read before the first batch is asked for
  assert next(out) == 0 and put == [0, 1]
  assert next(out) == 10 and put == [0, 1, 2]  # batch 2 goes out while step 1 runs
  assert list(out) == [20, 30, 40] and put == [0, 1, 2, 3, 4]
  with pytest.raises(ValueError, match=r"size: got 0; expected an int >= 1"):
    next(prefetch_to_device([], lambda b: b, size=0))


def test_metric_window_finds_the_first_non_finite_step_and_averages_the_rest():
  w = MetricWindow()
  for step, loss in enumerate([1.0, 3.0]):
    w.add(step, {"loss": jax.numpy.float32(loss), "accuracy": jax.numpy.float32(step)})
  assert w.check() is None
  assert w.mean() == {"loss": 2.0, "accuracy": 0.5} and w.mean() == {}
  w.add(7, {"loss": jax.numpy.float32(2.0)})
  w.add(8, {"loss": jax.numpy.float32(np.nan)})
  w.add(9, {"loss": jax.numpy.float32(np.inf)})
  step, loss = w.check()
  assert step == 8 and np.isnan(loss)


@pytest.mark.parametrize("image_size,dtype", [(0, np.uint8), (16, np.float32)])
def test_raw_images_normalised_on_the_device_equal_the_pipelines_bit_for_bit(
    digits_dir, image_size, dtype):
  c = default_dataset_config()
  c.update(name="digits", data_dir=digits_dir, image_size=image_size, flip=True)
  info = data.dataset_info(c)
  norm = jax.jit(lambda x: normalize_images(x, info.mean, info.std))
  for normalised, raw in [(next(data.train_batches(c, 16, seed=3, start_step=5)),
                           next(data.train_batches(c, 16, seed=3, start_step=5, normalize=False))),
                          (next(data.eval_batches(c, 16)),
                           next(data.eval_batches(c, 16, normalize=False)))]:
    assert raw["image"].dtype == dtype  # uint8 travels where no resize made it float
    np.testing.assert_array_equal(np.asarray(norm(raw["image"])), normalised["image"])
    np.testing.assert_array_equal(raw["label"], normalised["label"])


def test_the_loop_fetches_metrics_only_at_log_eval_and_checkpoint_steps(
    tmp_path, digits_dir, monkeypatch):
  checks = []
  real_check = MetricWindow.check
  monkeypatch.setattr(MetricWindow, "check", lambda self: checks.append(len(self._pending))
                      or real_check(self))
  c = default_config()
  c.dataset.data_dir = digits_dir
  c.update(batch_size=32, eval_batch_size=120, num_train_steps=12, log_every_steps=4,
           eval_every_steps=12, checkpoint_every_steps=6, plot=False)
  fit_lib.fit(c, tmp_path, progress=False)
  # Steps 4, 6 (checkpoint), 8, 12: never on the ordinary steps in between.
  assert checks == [4, 2, 2, 4]
  rows = [r for r in read_metrics(tmp_path / METRICS_FILE) if r["split"] == "train"]
  assert [r["step"] for r in rows] == [4, 8, 12]
  assert all(r["images_per_s"] > 0 and np.isfinite(r["loss"]) for r in rows)


def test_summary_seconds_count_every_invocation_once_and_a_finished_run_is_not_retimed(
    tmp_path, digits_dir):
  c = default_config()
  c.dataset.data_dir = digits_dir
  c.update(batch_size=32, eval_batch_size=120, num_train_steps=6, log_every_steps=3,
           eval_every_steps=6, checkpoint_every_steps=3, plot=False)
  first = fit_lib.fit(c, tmp_path, progress=False)
  record = read_elapsed(tmp_path / ELAPSED_FILE)
  assert sorted(record) == [3, 6] and 0 < record[3] < record[6] == first["seconds"]

  again = fit_lib.fit(c, tmp_path, progress=False)  # finished: restored and re-evaluated
  assert again["seconds"] == first["seconds"]

  c.num_train_steps = 9
  t0 = time.time()
  resumed = fit_lib.fit(c, tmp_path, progress=False)
  call = time.time() - t0
  record = read_elapsed(tmp_path / ELAPSED_FILE)
  assert sorted(record) == [3, 6, 9] and record[6] == first["seconds"]
  assert first["seconds"] < resumed["seconds"] == record[9] < first["seconds"] + call
