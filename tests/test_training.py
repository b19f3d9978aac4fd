"""Training core: schedules, losses, the train step, batch checks and the fit loop's errors."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.losses import cross_entropy, l1_penalty
from jaxvision.models import create_model
from jaxvision.models.resnet import ResNet
from jaxvision.training.checkpoint import Checkpointer
from jaxvision.training import optim, steps
from jaxvision.training.config import check_config, default_config
from jaxvision.training import run as run_lib
from jaxvision.training.fit import NonFiniteLoss, fit, fit_run
from jaxvision.training.train_state import create_train_state
from jaxvision.training.tasks import Classification
from jaxvision.training.validation import check_batch


def opt_config(**kw):
  c = default_config().optimizer
  c.unlock()
  c.update(kw)
  return c


def test_warmup_then_cosine_schedule():
  s = optim.make_schedule(opt_config(learning_rate=0.4, warmup_epochs=1.0), steps_per_epoch=10,
                          total_steps=110, batch_size=128)
  np.testing.assert_allclose([s(0), s(5), s(10), s(60), s(110)], [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-6)


def test_step_schedule_and_linear_scaling():
  s = optim.make_schedule(opt_config(learning_rate=0.1, schedule="step", lr_scaling=True),
                          steps_per_epoch=10, total_steps=100, batch_size=512)
  np.testing.assert_allclose([s(0), s(49), s(50), s(75), s(99)], [0.2, 0.2, 0.02, 0.002, 0.002],
                             rtol=1e-5)


@pytest.mark.parametrize("key,value", [("schedule", "linear"), ("name", "lamb")])
def test_unknown_optimizer_settings_are_errors(key, value):
  cfg = opt_config(**{key: value})
  with pytest.raises(ValueError, match=f"optimizer.{key}.*{value}"):
    s = optim.make_schedule(cfg, steps_per_epoch=1, total_steps=2, batch_size=1)
    optim.make_optimizer(cfg, s)


def test_sgd_weight_decay_is_l2_on_kernels_only():
  tx = optim.make_optimizer(opt_config(weight_decay=0.5, momentum=0.0), optax.constant_schedule(1.0))
  params = {"conv": {"kernel": jnp.ones((1, 1, 2, 2)), "bias": jnp.ones(2)}}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.5)  # -lr * wd * w
  np.testing.assert_allclose(updates["conv"]["bias"], 0.0)


def test_cross_entropy_with_label_smoothing_matches_the_formula():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  logp = jax.nn.log_softmax(logits)[0]
  eps = 0.3
  expected = -((1 - eps) * logp[1] + eps / 3 * logp.sum())
  np.testing.assert_allclose(cross_entropy(logits, jnp.array([1]), label_smoothing=eps), expected,
                             rtol=1e-6)
  weighted = cross_entropy(jnp.concatenate([logits, logits]), jnp.array([1, 0]),
                           weights=jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(weighted, -logp[1], rtol=1e-6)


def test_l1_penalty_sums_kernels_only():
  params = {"a": {"kernel": -jnp.ones((2, 3))}, "bn": {"scale": 5 * jnp.ones(3)}}
  assert float(l1_penalty(params)) == 6.0


@pytest.fixture(scope="module")
def tiny_state():
  model = ResNet(stage_sizes=(1, 1), widths=(4, 8), num_classes=3, stem="cifar", stem_width=4)
  return create_train_state(model, optax.sgd(0.05, momentum=0.9), jax.random.key(0), (8, 8, 1))


def test_train_step_fits_a_batch_and_updates_batch_stats(tiny_state):
  rs = np.random.RandomState(0)
  batch = {"image": rs.randn(12, 8, 8, 1).astype(np.float32),
           "label": rs.randint(0, 3, 12).astype(np.int32)}
  step = jax.jit(steps.make_train_step(l1=1e-4))
  state, first = step(tiny_state, batch, jax.random.key(0))
  for _ in range(30):
    state, m = step(state, batch, jax.random.key(0))
  assert int(state.step) == 31
  assert float(m["loss"]) < 0.3 * float(first["loss"])
  assert float(m["accuracy"]) == 1.0
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), tiny_state.batch_stats,
                       state.batch_stats)
  assert min(jax.tree.leaves(moved)) > 0  # every running statistic was updated


def test_eval_step_ignores_padding_rows(tiny_state):
  rs = np.random.RandomState(1)
  image = rs.randn(4, 8, 8, 1).astype(np.float32)
  label = np.array([0, 1, 2, 0], np.int32)
  ev = jax.jit(steps.make_eval_step())
  full = Classification.summarize(ev(tiny_state, {"image": image[:2], "label": label[:2]}))
  padded = Classification.summarize(ev(tiny_state, {"image": image, "label": label,
                                                "weight": np.array([1, 1, 0, 0], np.float32)}))
  assert full == pytest.approx(padded, rel=1e-6)


GOOD = {"image": np.zeros((4, 8, 8, 1), np.float32), "label": np.array([0, 1, 2, 9], np.int32)}


@pytest.mark.parametrize("change,err,match", [
    ({"image": np.zeros((4, 8, 8), np.float32)}, ValueError, r"rank 4 .* got shape \(4, 8, 8\)"),
    ({"image": np.zeros((4, 8, 8, 3), np.float32)}, ValueError, r"expected 1 channels .* \(4, 8, 8, 3\)"),
    ({"image": np.zeros((4, 8, 8, 1), np.int32)}, TypeError, "floating-point or uint8 dtype, got int32"),
    ({"label": np.array([0, 1, 2, 10], np.int32)}, ValueError, r"class ids in \[0, 10\).*\[0, 10\]"),
    ({"label": np.array([-1, 1, 2, 3], np.int32)}, ValueError, r"class ids in \[0, 10\).*\[-1, 3\]"),
    ({"label": np.zeros(4, np.float32)}, TypeError, "integer class ids"),
])
def test_bad_batches_are_named(change, err, match):
  check_batch(GOOD, image_shape=(8, 8, 1), num_classes=10)
  with pytest.raises(err, match=match):
    check_batch({**GOOD, **change}, image_shape=(8, 8, 1), num_classes=10)


def small_config(tmp_data_dir, **kw):
  c = default_config()
  c.dataset.data_dir = str(tmp_data_dir)
  c.batch_size = 32
  c.eval_batch_size = 120
  c.num_train_steps = 6
  c.log_every_steps = 2
  c.plot = False
  for k, v in kw.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c


def test_unknown_config_key_and_model_are_errors(tmp_path, digits_dir):
  c = small_config(digits_dir)
  c.unlock()
  c.optimiser = "sgd"
  # The wording is config.check_config's; fit must raise it, naming what is wrong.
  with pytest.raises(ValueError, match=r"optimiser"):
    fit(c, tmp_path, progress=False)
  with pytest.raises(ValueError, match="'resnet7'"):
    fit(small_config(digits_dir, **{"model.name": "resnet7"}), tmp_path / "b", progress=False)
  with pytest.raises(ValueError, match=r"depth"):
    c = small_config(digits_dir)
    c.model.options.depth = 3
    fit(c, tmp_path / "c", progress=False)


def test_workdir_of_another_model_is_refused_before_compute(tmp_path, digits_dir):
  (tmp_path / "run.json").write_text(json.dumps({"model": "resnet50", "dataset": "digits"}))
  with pytest.raises(ValueError, match=r"another run \(.*model: workdir has 'resnet50', this run has "
                                       r"'cifar_resnet20'"):
    fit(small_config(digits_dir), tmp_path, progress=False)


def test_a_best_metric_the_task_lacks_is_refused_before_anything_is_built(tmp_path, digits_dir,
                                                                          monkeypatch):
  def never(*args, **kwargs):
    raise AssertionError("the state was built before the config was checked")

  monkeypatch.setattr(run_lib, "create_train_state", never)
  with pytest.raises(ValueError, match=r"config.best_metric: got 'miou'; expected one of the "
                                       r"'classification' task's eval metrics \['loss', "
                                       r"'accuracy'\]"):
    run_lib.build_run(small_config(digits_dir, best_metric="miou"), tmp_path / "w")
  assert not (tmp_path / "w").exists()


def test_a_built_run_trains_and_a_rebuilt_one_resumes_where_it_stopped(tmp_path, digits_dir):
  c = small_config(digits_dir, num_train_steps=4, checkpoint_every_steps=2,
                   **{"model.name": "odenet"})
  c.model.options.update(width=4, groups=2, downsampling=0, middle="residual", num_blocks=1)
  run = run_lib.build_run(c, tmp_path)
  assert (run.start_step, run.total_steps, run.steps_per_epoch) == (0, 4, 1437 // 32)
  assert isinstance(run.task, Classification) and run.info.image_shape == (8, 8, 1)
  summary = fit_run(run, progress=False)
  assert summary["steps"] == 4 and (tmp_path / "summary.json").exists()
  again = run_lib.build_run(c, tmp_path)
  try:
    assert again.start_step == 4  # restored from the last checkpoint
    assert again.evaluate(again.state) == pytest.approx(summary["eval"], rel=1e-5)
    first = next(again.train_batches())
    again.dp.put_batch(first)  # checked against the task and the dataset
    assert first["image"].shape == (32, 8, 8, 1) and first["image"].dtype == np.uint8
  finally:
    again.close()


def test_check_config_accepts_the_defaults():
  check_config(default_config())


def test_nan_loss_stops_without_saving_over_the_last_good_checkpoint(tmp_path, digits_dir):
  c = small_config(digits_dir, **{"optimizer.learning_rate": 1e12, "optimizer.warmup_epochs": 0.0,
                                  "num_train_steps": 20, "checkpoint_every_steps": 1})
  with pytest.raises(NonFiniteLoss, match=r"(loss is (nan|inf)|parameters are not finite) at step "
                                          r"\d+; stopped without saving \(the last checkpoint, step \d+") as e:
    fit(c, tmp_path, progress=False)
  bad, good = map(int, re.search(r"at step (\d+).*checkpoint, step (\d+)", str(e.value)).groups())
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and max(saved) == good and good <= bad < 20
  restored = Checkpointer(tmp_path).restore_latest(_state_like(c))
  assert int(restored.step) == good
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored.params))


def _state_like(c):
  model = create_model(c.model.name, num_classes=10)
  tx = optim.make_optimizer(c.optimizer, optax.constant_schedule(0.1))
  return create_train_state(model, tx, jax.random.key(0), (8, 8, 1))


def test_sown_intermediates_are_logged_as_metrics():
  model = ResNet(stage_sizes=(2, 1), widths=(4, 8), num_classes=3, stem="cifar", stem_width=4,
                 stochastic_depth=True, final_survival_prob=0.5)
  state = create_train_state(model, optax.sgd(0.01), jax.random.key(0), (8, 8, 1))
  batch = {"image": np.ones((2, 8, 8, 1), np.float32), "label": np.zeros(2, np.int32)}
  step = jax.jit(steps.make_train_step(log_intermediates=("gate",)))
  kept = [float(step(state, batch, jax.random.key(i))[1]["gate"]) for i in range(20)]
  assert set(kept) <= {0.0, 1.0, 2.0, 3.0} and len(set(kept)) > 1  # blocks kept this step
  assert "gate" not in jax.jit(steps.make_train_step())(state, batch, jax.random.key(0))[1]
