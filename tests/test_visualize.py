"""Looking inside trained networks (jaxvision.analysis.visualize): first-layer filters, per-stage
feature maps, an ODE block's trajectory h(t), NFE against step, and the CLI, on two tiny fit runs
on the offline digits data."""

import json

import jax
import numpy as np
import pytest

from jaxvision.analysis import depth_study, visualize
from jaxvision.nn.ode import ODEOptions
from jaxvision.training.config import default_config
from jaxvision.training.fit import fit
from jaxvision.training.metric_writer import METRICS_FILE, read_metrics


def _fit(workdir, digits_dir, name, options, **overrides):
  c = default_config()
  c.model.name = name
  c.model.options.update(options)
  c.dataset.data_dir = digits_dir
  c.update(batch_size=32, eval_batch_size=360, num_train_steps=4, log_every_steps=1,
           eval_every_steps=4, checkpoint_every_steps=4, plot=False, **overrides)
  fit(c, workdir, progress=False)
  config, model, variables, step = visualize.load_run(workdir)
  assert step == 4 and config["model"]["name"] == name
  return workdir, model, variables


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory, digits_dir):
  return _fit(tmp_path_factory.mktemp("resnet"), digits_dir, "resnet",
              dict(stage_sizes=(1, 1), widths=(4, 8), stem="cifar", stem_width=4))


@pytest.fixture(scope="module")
def odenet_run(tmp_path_factory, digits_dir):
  return _fit(tmp_path_factory.mktemp("odenet"), digits_dir, "odenet",
              dict(width=4, downsampling=1, groups=2, solver="rk4", controller="constant",
                   dt=0.5), log_intermediates=("nfe",))


def images(n=3):
  return jax.random.normal(jax.random.key(0), (n, 8, 8, 1))


def test_filters_are_the_first_conv_kernel(resnet_run, odenet_run):
  for _, _, variables in (resnet_run, odenet_run):
    kernel = variables["params"]["conv1"]["kernel"]  # [kh, kw, C, N]
    filters = visualize.first_layer_filters(variables["params"])
    assert filters.shape == (kernel.shape[3], *kernel.shape[:3])
    np.testing.assert_array_equal(filters[2, ..., 0], np.asarray(kernel)[..., 0, 2])
  # AlexNet/VGG-style names: the first by natural order, not string order.
  params = {"features_10": {"kernel": np.zeros((3, 3, 8, 8))},
            "features_0": {"kernel": np.ones((5, 5, 3, 8))}, "fc": {"kernel": np.ones((8, 2))}}
  assert visualize.first_conv_kernel(params)[0] == ("features_0", "kernel")
  assert visualize.first_layer_filters(params).shape == (8, 5, 5, 3)
  with pytest.raises(ValueError, match="no 4-D convolution kernel"):
    visualize.first_layer_filters({"fc": {"kernel": np.ones((8, 2))}})


def test_stage_maps_are_the_models_features(resnet_run, odenet_run):
  _, model, variables = resnet_run
  x = images(1)
  features = model.apply(variables, x, train=False, features=True)
  maps = visualize.stage_feature_maps(model, variables, x[0])
  assert [m.shape for m in maps] == [f.shape[1:] for f in features] == [(8, 8, 4), (8, 8, 4),
                                                                         (4, 4, 8)]
  np.testing.assert_allclose(maps[-1], features[-1][0], rtol=1e-5, atol=1e-5)
  _, model, variables = odenet_run  # the stem (middle's input) and the middle's output
  assert [m.shape for m in visualize.stage_feature_maps(model, variables, x[0])] == [(3, 3, 4)] * 2
  with pytest.raises(ValueError, match=r"image: expected one image \[H, W, C\]"):
    visualize.stage_feature_maps(model, variables, x)


def test_ode_trajectory_runs_from_the_blocks_input_to_its_output(odenet_run):
  _, model, variables = odenet_run
  x = images()
  # The block's input, independently: the stem's last convolution (downsampling=1: conv2).
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"],
                         capture_intermediates=lambda m, method: m.name == "conv2")
  stem = state["intermediates"]["conv2"]["__call__"][0]
  # The run's rk4 with dt = 0.5 (fixed steps), and dopri5 with adaptive steps on the same f:
  # saving at ts does not move the solver's steps, so h(T) is the block's own output.
  adaptive = model.clone(ode=ODEOptions(solver="dopri5", rtol=1e-3, atol=1e-3))
  outs = {}
  for m, tol in ((model, 1e-5), (adaptive, 1e-4)):
    ts = np.linspace(0.0, m.t1, 7)
    hs = visualize.ode_trajectory(m, variables, x, ts)
    assert hs.shape == (7, 3, 3, 3, 4)
    np.testing.assert_allclose(hs[0], stem, rtol=1e-6, atol=1e-6)
    outs[m.ode.solver] = depth_study.middle_output(m)(variables["params"], x)  # its own solve
    np.testing.assert_allclose(hs[-1], outs[m.ode.solver], rtol=tol, atol=tol)
    assert not np.allclose(hs[-1], hs[0])
  one = visualize.ode_trajectory(model, variables, x[1], 3)  # one image; 3 times over [0, T]
  assert one.shape == (3, 3, 3, 4)  # fixed steps: the same solve as in the batch
  np.testing.assert_allclose(one[-1], outs["rk4"][1], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"ts: expected increasing times in \[0.0, 1.0\]"):
    visualize.ode_trajectory(model, variables, x, [0.0, 2.0])
  plain = model.clone(middle="residual")
  with pytest.raises(ValueError, match="expected an ODE block named 'middle'.*ResidualStage"):
    visualize.ode_trajectory(plain, jax.eval_shape(plain.init, jax.random.key(0), x, train=False),
                             x, 3)  # found by tracing only: shapes suffice


def test_nfe_is_read_for_every_logged_train_step(odenet_run, resnet_run):
  workdir = odenet_run[0]
  steps, nfe = visualize.nfe_against_step(workdir)
  logged = [r["step"] for r in read_metrics(workdir / METRICS_FILE) if r["split"] == "train"]
  assert steps.tolist() == logged == [1, 2, 3, 4]
  assert np.all(nfe == 8)  # rk4: 4 evaluations per step, 2 steps of dt = 0.5
  with pytest.raises(ValueError, match="no train rows with 'nfe'.*log_intermediates"):
    visualize.nfe_against_step(resnet_run[0])


def is_png(path, size=5_000):
  return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > size


def test_cli_writes_the_plots(odenet_run, tmp_path, capsys):
  assert visualize.main(["--workdir", str(odenet_run[0]), "--out", str(tmp_path),
                         "--image-index", "5"]) == 0
  for name in ("filters", "feature_maps", "ode_trajectory", "nfe"):
    assert is_png(tmp_path / f"{name}.png", 2_000 if name == "filters" else 10_000), name
  printed = capsys.readouterr().out
  assert "odenet at step 4" in printed and printed.count("wrote") == 4


def test_cli_names_a_bad_workdir(tmp_path, capsys):
  assert visualize.main(["--workdir", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
  assert "--workdir:" in capsys.readouterr().err
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text(json.dumps(default_config().to_dict()))
  assert visualize.main(["--workdir", str(tmp_path / "run"), "--out", str(tmp_path)]) == 2
  assert f"--workdir: no checkpoint in {tmp_path / 'run'}" in capsys.readouterr().err


def test_plots_take_plain_arrays(tmp_path):
  from jaxvision.plots import inside
  rgb = np.random.RandomState(0).randn(16, 5, 5, 3)
  shown = inside.filter_images(rgb)
  assert shown.shape == (16, 5, 5, 3) and shown.min() == 0 and shown.max() == 1
  assert inside.filter_images(rgb[..., :2]).shape == (16, 5, 5)  # grey
  assert is_png(inside.plot_filters(rgb, tmp_path / "f.png"), 2_000)
  fmap = np.zeros((4, 4, 5))
  fmap[..., 3] = 2.0
  fmap[..., 1] = 1.0
  assert inside.top_channels(fmap, 2, "mean").tolist() == [3, 1]
  assert inside.top_channels(fmap, 9).tolist() == [0, 1, 2, 3, 4]
  hs = np.cumsum(np.random.RandomState(1).randn(5, 2, 3, 3, 4), axis=0)
  assert is_png(inside.plot_ode_trajectory(np.linspace(0, 1, 5), hs, tmp_path / "t.png"))
  with pytest.raises(ValueError, match=r"hs: expected \[T=5, B, H, W, C\]"):
    inside.plot_ode_trajectory(np.linspace(0, 1, 5), hs[0], tmp_path / "t.png")
