"""The ODE block (diffrax): closed-form solutions, adjoints, Euler convergence of the shared-weight
residual stage, NFE, failures and options; the ODE models (registry, parameter counts)."""

import functools
import re
import types

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import create_model, list_models, model_options
from jaxvision.models.odenet import ode_twin
from jaxvision.models.resnet import ResNet
from jaxvision.nn import ode
from jaxvision.nn.ode import EvaluationCounter, ODEBlock, ODEFunc, ODEOptions
from jaxvision.nn.residual import ResidualStage
from jaxvision.training import steps


class Linear(nn.Module):
  """dh/dt = a * h + b * t."""

  @nn.compact
  def __call__(self, t, h):
    a = self.param("a", lambda k: jnp.array(-0.7))
    b = self.param("b", lambda k: jnp.array(0.3))
    return a * h + b * t


def closed_form(h0, a, b, t0, t1):
  """h(t1) of dh/dt = a h + b t from h(t0) = h0: C e^{a t} - b t / a - b / a^2."""
  c = (h0 + b * t0 / a + b / a**2) * np.exp(-a * t0)
  return c * np.exp(a * t1) - b * t1 / a - b / a**2


H0 = np.linspace(-1.0, 1.0, 2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2)
LINEAR = {"params": {"f": {"a": jnp.array(-0.7), "b": jnp.array(0.3)}}}


def linear_block(**options):
  return ODEBlock(Linear, t0=0.5, t1=2.0, options=ODEOptions(**options))


@pytest.mark.parametrize("options,tol", [
    (dict(solver="dopri5", rtol=1e-7, atol=1e-7), 1e-5),
    (dict(solver="tsit5", rtol=1e-7, atol=1e-7), 1e-5),
    (dict(solver="rk4", controller="constant", dt=0.05), 1e-5),
    (dict(solver="euler", controller="constant", dt=0.001), 2e-3),
])
def test_linear_vector_field_matches_the_closed_form(options, tol):
  out = jax.jit(linear_block(**options).apply)(LINEAR, H0)
  np.testing.assert_allclose(out, closed_form(H0, -0.7, 0.3, 0.5, 2.0), atol=tol, rtol=0)


def test_gradient_through_the_solve_matches_the_closed_form():
  # b = 0: h(T) = h0 e^{a T}, d sum(h(T)) / da = T sum(h0) e^{a T}, d/dh0 = e^{a T}.
  block = linear_block(rtol=1e-7, atol=1e-7)
  params = {"f": {"a": jnp.array(-0.7), "b": jnp.array(0.0)}}
  grads = jax.jit(jax.grad(lambda p, x: block.apply({"params": p}, x).sum(), argnums=(0, 1)))(
      params, H0)
  np.testing.assert_allclose(grads[0]["f"]["a"], 1.5 * H0.sum() * np.exp(-0.7 * 1.5), rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(grads[1], np.full(H0.shape, np.exp(-0.7 * 1.5)), rtol=1e-4)


def test_rk4_is_the_classical_fourth_order_method():
  # On dh/dt = a h one step multiplies h by the stability polynomial 1 + z + z^2/2 + z^3/6 + z^4/24
  # (z = a dt), which identifies the classical tableau among 4-stage methods.
  a, dt = -1.0, 0.25
  out = jax.jit(linear_block(solver="rk4", controller="constant", dt=dt).apply)(
      {"params": {"f": {"a": jnp.array(a), "b": jnp.array(0.0)}}}, H0)
  z = a * dt
  np.testing.assert_allclose(out, H0 * (1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24) ** 6, rtol=1e-5,
                             atol=1e-7)


# A small convolutional vector field, shared by the tests below.
X = jax.random.normal(jax.random.key(1), (2, 4, 4, 4))
FIELD = functools.partial(ODEFunc, groups=2)


@pytest.fixture(scope="module")
def field_params():
  return ODEBlock(FIELD).init(jax.random.key(0), X)["params"]


class Smooth(nn.Module):
  """A smooth nonlinear field. (With ReLU's kinks, as in ODEFunc, the computed sensitivities
  converge slowly in the step size, so two correct adjoints agree only to about 1%.)"""

  @nn.compact
  def __call__(self, t, h):
    return jnp.tanh(nn.Conv(h.shape[-1], (3, 3))(h) + t)


def loss_grads(adjoint):
  block = ODEBlock(Smooth, options=ODEOptions(rtol=1e-6, atol=1e-6, adjoint=adjoint))
  params = block.init(jax.random.key(0), X)["params"]
  loss = lambda p, x: jnp.sum(jnp.sin(block.apply({"params": p}, x)))
  return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, X)


def test_recursive_checkpoint_and_backsolve_gradients_agree():
  direct = loss_grads("recursive_checkpoint")  # backpropagation through the solver's steps
  backsolve = loss_grads("backsolve")  # the adjoint ODE solved backwards in time
  for a, b in zip(jax.tree.leaves(direct), jax.tree.leaves(backsolve)):
    assert np.abs(a).max() > 0.1
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(a).max())


def test_shared_weight_stage_is_euler_and_converges_to_the_ode_at_first_order(field_params):
  reference = jax.jit(ODEBlock(FIELD, options=ODEOptions(rtol=1e-7, atol=1e-7)).apply)(
      {"params": field_params}, X)
  stage_params = {"params": {"blocks": {"block": {"branch": field_params["f"]}}}}
  errors = {}
  for n in (1, 4, 8, 16, 32):
    stage = ResidualStage(dict(branch=FIELD, out_features=4, step_size=1.0 / n,
                               post_activation=False, time_input=True), n, share_weights=True,
                          scan_unroll=1)
    y = jax.jit(functools.partial(stage.apply, train=False))(stage_params, X)
    if n == 1:  # one block is one Euler step: Y + h f(0, Y)
      f = FIELD().apply({"params": field_params["f"]}, 0.0, X)
      np.testing.assert_allclose(y, X + f, rtol=1e-5, atol=1e-5)
    errors[n] = float(jnp.linalg.norm(y - reference) / jnp.linalg.norm(reference))
  ratios = [errors[n] / errors[2 * n] for n in (4, 8, 16)]
  assert all(1.8 < r < 2.2 for r in ratios), (errors, ratios)


def sown_nfe(block, params, x):
  _, state = jax.jit(functools.partial(block.apply, mutable=["intermediates"]))(params, x)
  return int(state["intermediates"]["nfe"][0])


def test_nfe_is_sown_and_grows_when_tolerances_tighten(field_params):
  nfe = {tol: sown_nfe(ODEBlock(FIELD, options=ODEOptions(rtol=tol, atol=tol)),
                       {"params": field_params}, X) for tol in (1e-2, 1e-6)}
  assert 7 <= nfe[1e-2] < nfe[1e-6]
  # Fixed steps: the number of stages times the number of steps.
  rk4 = ODEBlock(FIELD, options=ODEOptions(solver="rk4", controller="constant", dt=0.25))
  assert sown_nfe(rk4, {"params": field_params}, X) == 16


@pytest.mark.parametrize("options", [
    dict(solver="dopri5", rtol=1e-5, atol=1e-5),  # first-same-as-last: 6 per step + 1
    dict(solver="heun", rtol=1e-4, atol=1e-4),
    dict(solver="midpoint", controller="constant", dt=0.1),
])
def test_nfe_counts_every_evaluation_of_f(options):
  block = linear_block(**options)
  with EvaluationCounter() as count:
    out, state = jax.jit(functools.partial(block.apply, mutable=["intermediates"]))(LINEAR, H0)
    jax.block_until_ready(out)
  assert count.evaluations == int(state["intermediates"]["nfe"][0]) > 0
  assert count.vjps == 0


@pytest.mark.parametrize("adjoint", ["recursive_checkpoint", "backsolve"])
def test_evaluation_counter_reports_the_backward_nfe(adjoint):
  block = linear_block(rtol=1e-5, atol=1e-5, adjoint=adjoint)
  forward = sown_nfe(block, LINEAR, H0)
  with EvaluationCounter() as count:
    grads = jax.jit(jax.grad(lambda p: block.apply({"params": p}, H0).sum()))(LINEAR["params"])
    jax.block_until_ready(grads)
  if adjoint == "recursive_checkpoint":  # every forward evaluation is differentiated once
    assert count.vjps == forward
  else:  # the adjoint ODE's own adaptive solve: one VJP of f per evaluation
    assert count.vjps >= 7 and count.vjps % 6 == 1
  assert count.evaluations >= forward + (count.vjps if adjoint == "backsolve" else 0)


def test_train_step_logs_nfe_as_a_metric():
  import optax

  from jaxvision.training.train_state import create_train_state

  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
      rk4 = ODEOptions(solver="rk4", controller="constant", dt=0.5)
      return nn.Dense(3)(jnp.mean(ODEBlock(Linear, options=rk4)(x), axis=(1, 2)))

  state = create_train_state(Tiny(), optax.sgd(0.1), jax.random.key(0), (3, 3, 2))
  batch = {"image": H0, "label": np.zeros(2, np.int32)}
  _, metrics = jax.jit(steps.make_train_step(log_intermediates=("nfe",)))(
      state, batch, jax.random.key(0))
  assert float(metrics["nfe"]) == 8.0  # 2 steps x 4 stages


@pytest.mark.parametrize("grad", [False, True])
def test_max_steps_is_a_clear_error(grad):
  block = ODEBlock(Linear, t1=2.0, options=ODEOptions(rtol=1e-9, atol=1e-9, max_steps=3),
                   name="solve")
  fn = jax.grad(lambda v, x: block.apply(v, x).sum()) if grad else block.apply
  with pytest.raises(Exception, match=r"ODESolveError: ODEBlock 'solve': the dopri5 solve over "
                                      r"\[0.0, 2.0\] stopped at t=0\.\d+ after 3 steps: "
                                      r"max_steps=3 reached; raise max_steps"):
    jax.block_until_ready(jax.jit(fn)(LINEAR, H0))


def test_non_finite_state_is_a_clear_error_or_reported_with_throw_false():
  nan = {"params": {"f": {"a": jnp.array(jnp.nan), "b": jnp.array(0.0)}}}
  block = linear_block(solver="euler", controller="constant", dt=0.5)
  with pytest.raises(Exception, match=r"ODEBlock .* stopped at t=2 after 3 steps: the state is "
                                      "not finite"):
    jax.block_until_ready(jax.jit(block.apply)(nan, H0))
  quiet = linear_block(solver="euler", controller="constant", dt=0.5, throw=False)
  _, state = jax.jit(functools.partial(quiet.apply, mutable=["intermediates"]))(nan, H0)
  assert float(state["intermediates"]["ode_failed"][0]) == 1.0


def test_throw_false_reports_max_steps_and_returns_the_state_reached(caplog):
  block = ODEBlock(Linear, t1=2.0, options=ODEOptions(rtol=1e-9, atol=1e-9, max_steps=3,
                                                      throw=False))
  out, state = jax.jit(functools.partial(block.apply, mutable=["intermediates"]))(LINEAR, H0)
  assert float(state["intermediates"]["ode_failed"][0]) == 1.0
  assert np.isfinite(out).all() and not np.allclose(out, H0)  # stopped part-way, not at h0
  assert "after 3 steps: max_steps=3 reached (throw=False: continuing)" in caplog.text


def test_failure_check_is_no_jax_effect_and_passes_gradients_through():
  # A JAX effect (jax.debug.callback) in the step would put every call of it on jit's Python
  # dispatch path (docs/BENCHMARKS.md); the check is a pure callback the state passes through.
  block = linear_block(rtol=1e-3, atol=1e-3)
  traced = jax.jit(jax.grad(lambda p, x: block.apply({"params": p}, x).sum(), (0, 1))).trace(
      LINEAR["params"], H0)
  assert not traced.jaxpr.effects
  assert len(re.findall(r"python_\w+_callback", traced.lower().as_text())) == 1
  # On the happy path the check is the identity, its derivative too.
  y = jnp.asarray(H0)
  sol = types.SimpleNamespace(result=diffrax.RESULTS.successful, ts=jnp.ones(1),
                              stats={"num_steps": jnp.array(2)})
  check = lambda y: ode.check_solve(y, sol, limit=4, options=ODEOptions(), where="test")[0]
  out, tangent = jax.jit(lambda y: jax.jvp(check, (y,), (2 * y,)))(y)
  np.testing.assert_array_equal(out, y)
  np.testing.assert_array_equal(tangent, 2 * y)


def test_ode_module_re_exports_its_parts():
  from jaxvision.nn import ode_check, ode_field, ode_options
  assert ode.ODESolveError is ode_check.ODESolveError and ode.ODEOptions is ode_options.ODEOptions
  assert ode.patches_conv is ode_field.patches_conv
  assert all(hasattr(ode, name) for name in ode.__all__)


@pytest.mark.parametrize("options,match", [
    (dict(solver="rk5"), r"solver: expected one of .*'dopri5'.* got 'rk5'"),
    (dict(controller="constant"), "dt: controller='constant' needs a step"),
    (dict(solver="euler"), "'euler' has no error estimate"),
    (dict(rtol=0.0), "rtol: expected a tolerance > 0, got 0.0"),
    (dict(adjoint="adjoint"), "adjoint: expected one of"),
    (dict(max_steps=0), "max_steps: expected an int >= 1, got 0"),
])
def test_bad_options_are_named(options, match):
  with pytest.raises(ValueError, match=match):
    ODEOptions(**options)


def test_fixed_steps_beyond_max_steps_fail_before_solving():
  block = linear_block(solver="rk4", controller="constant", dt=0.01, max_steps=100)
  with pytest.raises(ValueError, match=r"max_steps: 100 is fewer than the 150 fixed steps"):
    block.apply(LINEAR, H0)


def test_vector_field_with_batch_norm_is_refused():
  class WithBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, t, h):
      return nn.BatchNorm(use_running_average=True)(h)

  with pytest.raises(ValueError, match=r"vector_field: f may hold parameters only, got .*batch_stats"):
    v = ODEBlock(WithBatchNorm).init(jax.random.key(0), H0)
    ODEBlock(WithBatchNorm).apply(v, H0)


def test_augmentation_appends_zero_channels_that_the_solve_keeps():
  block = ODEBlock(Linear, options=ODEOptions(solver="rk4", controller="constant", dt=0.5),
                   augment=3)
  out = jax.jit(block.apply)(LINEAR, H0)
  assert out.shape == (*H0.shape[:-1], H0.shape[-1] + 3)
  # The augmented channels start at 0 and follow dh/dt = a h + b t: only the b t term moves them.
  assert np.abs(out[..., 2:]).max() > 0
  np.testing.assert_allclose(out[..., 2:], out[0, 0, 0, 2], rtol=1e-6)


@pytest.mark.parametrize("kernel,strides,padding", [(3, 1, 1), (4, 2, 1)])
def test_patches_convolution_equals_xla_convolution(kernel, strides, padding):
  x = jax.random.normal(jax.random.key(2), (2, 7, 6, 3))
  conv = functools.partial(nn.Conv, 5, (kernel, kernel), (strides, strides),
                           padding=((padding, padding),) * 2)
  v = conv().init(jax.random.key(0), x)

  @jax.jit
  def outputs_and_grads(v, x):
    out = []
    for m in (conv(), conv(conv_general_dilated=ode.patches_conv)):
      loss = lambda v, x: jnp.sum(jnp.sin(m.apply(v, x)))  # noqa: B023
      out.append((m.apply(v, x), jax.grad(loss, (0, 1))(v, x)))
    return out

  xla, patches = outputs_and_grads(v, x)
  for p, q in zip(jax.tree.leaves(xla), jax.tree.leaves(patches)):
    np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- models

def num_params(model, size, channels):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)),
                                             train=False))
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))


def test_odenet_mnist_has_the_parameters_of_torchdiffeqs_odenet():
  # torchdiffeq's examples/odenet_mnist.py: downsampling 132,096 + ODEfunc 75,392 + head 778.
  assert num_params(create_model("odenet_mnist", num_classes=10), 28, 1) == 208_266


def test_ode_resnet_has_one_shared_block_per_stage():
  # Each stage of identical blocks becomes one vector field = one block's parameters (GroupNorm
  # has the 2C parameters of the BatchNorm it replaces).
  for base, kw, size in (("cifar_resnet20", dict(stage_sizes=(1, 2, 2), widths=(16, 32, 64),
                                                 stem="cifar", stem_width=16, shortcut="pad"), 32),
                         ("resnet50", dict(stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512),
                                           bottleneck=True), 64)):
    ode_net = create_model("ode_resnet", base=base, num_classes=10)
    assert num_params(ode_net, size, 3) == num_params(ResNet(num_classes=10, **kw), size, 3)


def test_registry_lists_the_ode_models_and_their_options():
  assert {"odenet", "odenet_mnist", "ode_resnet"} <= set(list_models())
  assert {"solver", "rtol", "atol", "dt", "controller", "max_steps", "adjoint", "throw",
          "augment", "time_dependent", "axis_name", "dtype"} <= set(model_options("odenet_mnist"))
  assert {"middle", "num_blocks", "share_weights", "t1"} <= set(model_options("odenet"))
  assert "base" in model_options("ode_resnet")
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['num_blocks'\]"):
    create_model("odenet_mnist", num_classes=10, num_blocks=4)
  with pytest.raises(ValueError, match="solver: expected one of"):
    create_model("odenet_mnist", num_classes=10, solver="rk45")
  with pytest.raises(ValueError, match="base: expected a ResNet"):
    create_model("ode_resnet", num_classes=10, base="odenet")


def test_ode_twin_maps_a_shared_stage_onto_the_ode_block():
  model = create_model("odenet", num_classes=3, width=4, downsampling=0, groups=2,
                       middle="residual", num_blocks=2)
  params = model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)), train=False)["params"]
  twin, twin_params = ode_twin(model, params, ODEOptions(solver="euler", controller="constant",
                                                         dt=0.5))
  x = jax.random.normal(jax.random.key(3), (2, 6, 6, 1))
  loss = lambda m: jax.jit(jax.value_and_grad(
      lambda p: jnp.sum(jnp.sin(m.apply({"params": p}, x, train=False)))))
  # Two Euler steps of dt = 0.5 are the two blocks of h = 0.5: same loss, same gradients.
  (value, grads), (twin_value, twin_grads) = loss(model)(params), loss(twin)(twin_params)
  np.testing.assert_allclose(value, twin_value, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(ode_twin(model, grads, twin.ode)[1]), jax.tree.leaves(twin_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="share_weights=True"):
    ode_twin(model.clone(share_weights=False), params, ODEOptions())


def test_odenet_bad_input_and_dtype():
  model = create_model("odenet", num_classes=3, width=4, downsampling=0, groups=2, solver="rk4",
                       controller="constant", dt=1.0, dtype=jnp.bfloat16, axis_name="batch")
  with pytest.raises(ValueError, match=r"x: expected images of rank 4"):
    model.init(jax.random.key(0), jnp.zeros((6, 6, 1)), train=False)
  v = model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)), train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v))
  out = jax.jit(functools.partial(model.apply, train=False))(v, jnp.ones((2, 6, 6, 1)))
  assert out.dtype == jnp.float32 and out.shape == (2, 3) and np.isfinite(out).all()


def test_ode_resnet_last_stage_reaches_the_classifier():
  """The pooled output of an ODE stage depends on its vector field's weights. (Without the ReLU
  that ends the stage, GroupNorm in f leaves the pooled h(T) equal to the pooled h(0) while
  f's biases are 0: the classifier could not see the ODE block.)"""
  model = create_model("ode_resnet", base="cifar_resnet20", num_classes=10, stage_sizes=(1,),
                       widths=(8,), stem="cifar", stem_width=8, solver="euler",
                       controller="constant", dt=0.5)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  v = model.init(jax.random.key(1), x, train=False)
  apply = jax.jit(lambda v: model.apply(v, x, train=False))
  other = model.init(jax.random.key(2), x, train=False)["params"]["layer1"]  # another f
  swapped = {**v, "params": {**v["params"], "layer1": other}}
  assert float(jnp.max(jnp.abs(apply(v) - apply(swapped)))) > 1e-3


@pytest.mark.slow
def test_ode_resnet_runs_with_an_ode_block_per_stage():
  model = create_model("ode_resnet", base="cifar_resnet20", num_classes=10, solver="rk4",
                       controller="constant", dt=0.5, time_dependent=True)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  v = model.init(jax.random.key(1), x, train=False)
  out, state = jax.jit(lambda v: model.apply(v, x, train=True,
                                             mutable=["batch_stats", "intermediates"]))(v)
  assert out.shape == (2, 10) and np.isfinite(out).all()
  nfe = {k: int(s["nfe"][0]) for k, s in state["intermediates"].items()}
  assert nfe == {"layer1": 8, "layer2": 8, "layer3": 8}  # 2 RK4 steps per stage
  assert set(state["batch_stats"]) == {"bn1", "layer2_transition", "layer3_transition"}
