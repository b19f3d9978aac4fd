"""The ResNet family: parameter counts, scan vs unrolled, step size, shared weights, stochastic
depth, remat, the registry and bad input."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import create_model, list_models, model_options
from jaxvision.models.resnet import ResNet
from jaxvision.nn import residual
from jaxvision.nn.residual import BasicBranch, ResidualStage, linear_survival_probs


def num_params(model, size, channels=3):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)),
                                             train=False))
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("name,count", [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("resnet101", 44_549_160), ("resnet152", 60_192_808)])
def test_imagenet_resnet_parameter_counts_equal_torchvision(name, count):
  assert num_params(create_model(name, num_classes=1000), 224) == count


@pytest.mark.parametrize("depth,millions", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_cifar_resnet_parameter_counts_match_he_et_al(depth, millions):
  # He et al. 2015, Table 6 (option A shortcuts, no parameters).
  n = num_params(create_model(f"cifar_resnet{depth}", num_classes=10), 32)
  assert round(n / 1e6, 2 if millions < 1 else 1) == millions
  # Option B adds a 1x1 projection + BN at the two transitions: 16*32 + 2*32 + 32*64 + 2*64.
  projection = num_params(create_model(f"cifar_resnet{depth}", num_classes=10,
                                       shortcut="projection"), 32)
  assert projection - n == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64


def test_cifar_resnet_depth_is_6n_plus_2():
  model = create_model("cifar_resnet56", num_classes=10)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  # Weighted layers: conv kernels (stacked ones carry a leading block axis) and the Dense head.
  kernels = [a for p, a in jax.tree_util.tree_leaves_with_path(shapes["params"])
             if "kernel" in jax.tree_util.keystr(p)]
  layers = sum(a.shape[0] if a.ndim == 5 else 1 for a in kernels)
  assert layers == 6 * 9 + 2


def tiny(**kw):
  kw = {"stage_sizes": (3, 2), "widths": (4, 8), "num_classes": 3, "stem": "cifar",
        "stem_width": 4, **kw}
  return ResNet(**kw)


@pytest.fixture(scope="module")
def x():
  return jax.random.normal(jax.random.key(1), (4, 8, 8, 3))


def unstack_model_vars(variables, model):
  """Scanned-model variables -> the unrolled model's layout."""
  out = jax.tree.map(lambda a: a, variables)
  for col in out:
    for i, n in enumerate(model.stage_sizes):
      first = f"layer{i + 1}"
      if first in out[col]:
        blocks = n - (1 if f"{first}_transition" in out[col] else 0)
        out[col][first] = residual.unstack_stage(out[col][first], blocks)
  return out


@pytest.mark.parametrize("train", [False, True])
def test_scanned_stage_equals_unrolled_stage(x, train):
  scanned, unrolled = tiny(), tiny(scan=False)
  variables = scanned.init(jax.random.key(0), x, train=False)
  variables = jax.tree.map(lambda a: a + 0.05 * jnp.sin(jnp.arange(a.size).reshape(a.shape)),
                           variables)  # non-trivial BN statistics and scales
  kw = {"mutable": ["batch_stats"]} if train else {}
  out_s = jax.jit(functools.partial(scanned.apply, train=train, **kw))(variables, x)
  out_u = jax.jit(functools.partial(unrolled.apply, train=train, **kw))(
      unstack_model_vars(variables, scanned), x)
  if train:
    (out_s, new_s), (out_u, new_u) = out_s, out_u
    new_s = unstack_model_vars(new_s, scanned)
    for a, b in zip(jax.tree.leaves(new_s), jax.tree.leaves(new_u)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out_s, out_u, rtol=1e-5, atol=1e-5)
  assert set(unrolled.init(jax.random.key(0), x, train=False)["params"]["layer1"]) == {
      "blocks_0", "blocks_1", "blocks_2"}


def stage(**kw):
  norm = functools.partial(nn.BatchNorm, use_running_average=True)
  block = dict(branch=functools.partial(BasicBranch, features=4, norm=norm), out_features=4,
               norm=norm, **{k: kw.pop(k) for k in ("step_size", "stochastic_depth") if k in kw})
  return ResidualStage(block, **kw)


def branch_fn(params, batch_stats, j=None):
  """G(Y) of block j of a stage (j=None: shared weights)."""
  pick = (lambda a: a) if j is None else (lambda a: a[j])
  p = jax.tree.map(pick, params["blocks"]["block"]["branch"])
  s = jax.tree.map(lambda a: a[j if j is not None else 0], batch_stats["blocks"]["block"]["branch"])
  br = BasicBranch(4, norm=functools.partial(nn.BatchNorm, use_running_average=True))
  return lambda y: br.apply({"params": p, "batch_stats": s}, y)


@pytest.fixture(scope="module")
def y():
  return jax.nn.relu(jax.random.normal(jax.random.key(2), (2, 6, 6, 4)))


@pytest.mark.parametrize("h", [0.0, 0.1, 1.0])
def test_step_size_is_h_in_y_plus_h_g(y, h):
  m = stage(num_blocks=3, step_size=h)
  v = m.init(jax.random.key(0), y, train=False)
  expected = y
  for j in range(3):
    expected = jax.nn.relu(expected + h * branch_fn(v["params"], v["batch_stats"], j)(expected))
  np.testing.assert_allclose(m.apply(v, y, train=False), expected, rtol=1e-5, atol=1e-6)
  if h == 0.0:  # no step: the identity on non-negative states
    np.testing.assert_allclose(m.apply(v, y, train=False), y)


def test_share_weights_uses_one_theta_for_every_step(y):
  shared, separate = stage(num_blocks=4, share_weights=True), stage(num_blocks=4)
  vs = shared.init(jax.random.key(0), y, train=False)
  vp = separate.init(jax.random.key(0), y, train=False)
  kernel = vs["params"]["blocks"]["block"]["branch"]["conv1"]["kernel"]
  assert kernel.shape == (3, 3, 4, 4)  # no block axis: one theta
  assert vp["params"]["blocks"]["block"]["branch"]["conv1"]["kernel"].shape == (4, 3, 3, 4, 4)
  assert num_params(shared, 6, 4) * 4 == num_params(separate, 6, 4)
  g = branch_fn(vs["params"], vs["batch_stats"])
  expected = y
  for _ in range(4):
    expected = jax.nn.relu(expected + g(expected))
  np.testing.assert_allclose(shared.apply(vs, y, train=False), expected, rtol=1e-5, atol=1e-6)


def test_linear_survival_probs():
  np.testing.assert_allclose(linear_survival_probs(4, 0.5), [0.875, 0.75, 0.625, 0.5])
  with pytest.raises(ValueError, match="final_survival_prob"):
    linear_survival_probs(4, 0.0)


def test_stochastic_depth_drops_whole_blocks_at_the_linear_rates(x):
  model = tiny(stochastic_depth=True, final_survival_prob=0.5)
  v = model.init(jax.random.key(0), x, train=False)

  @jax.jit
  def gates(rng):
    _, state = model.apply(v, x, train=True, rngs={"stochastic_depth": rng},
                           mutable=["batch_stats", "intermediates"])
    inter = state["intermediates"]
    return jnp.concatenate([
        jnp.ravel(inter["layer1"]["blocks"]["block"]["gate"][0]),
        jnp.ravel(inter["layer2_transition"]["gate"][0]),
        jnp.ravel(inter["layer2"]["blocks"]["block"]["gate"][0])])

  samples = np.stack([gates(r) for r in jax.random.split(jax.random.key(3), 600)])
  assert set(np.unique(samples)) <= {0.0, 1.0}  # a whole block is kept or dropped, never scaled
  expected = np.array(linear_survival_probs(5, 0.5))
  # 600 Bernoulli draws: std <= 0.02; allow 4 sigma.
  np.testing.assert_allclose(samples.mean(0), expected, atol=0.085)
  assert len({tuple(s) for s in samples}) > 5  # blocks drop independently


def test_stochastic_depth_dropped_block_is_identity_and_eval_scales_by_p(y):
  m = stage(num_blocks=1, stochastic_depth=True, survival_probs=(0.3,))
  v = m.init(jax.random.key(0), y, train=False)
  g = branch_fn(v["params"], v["batch_stats"], 0)(y)
  kept, dropped = jax.nn.relu(y + g), y
  train_apply = jax.jit(lambda r: m.apply(v, y, train=True, rngs={"stochastic_depth": r}))
  outs = [train_apply(r) for r in jax.random.split(jax.random.key(4), 40)]
  is_kept = [bool(jnp.allclose(o, kept, atol=1e-6)) for o in outs]
  is_dropped = [bool(jnp.allclose(o, dropped)) for o in outs]
  assert all(a != b for a, b in zip(is_kept, is_dropped))
  assert 3 <= sum(is_kept) <= 25  # p = 0.3 of 40
  eval_out = m.apply(v, y, train=False)
  np.testing.assert_allclose(eval_out, jax.nn.relu(y + 0.3 * g), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(eval_out, m.apply(v, y, train=False))  # deterministic


def test_stochastic_depth_skips_a_dropped_block(y):
  """Huang et al.: a dropped block is not run (a conditional in the program, so its time is
  saved); its BatchNorm statistics stay and its parameters get no gradient. A kept block's
  statistics move and its parameters get gradients."""
  norm = functools.partial(nn.BatchNorm, use_running_average=False, momentum=0.9)  # training
  m = ResidualStage(dict(branch=functools.partial(BasicBranch, features=4, norm=norm),
                         out_features=4, norm=norm, stochastic_depth=True), num_blocks=1,
                    survival_probs=(0.5,))
  v = m.init(jax.random.key(0), y, train=False)

  def loss(params, rng):
    out, state = m.apply({"params": params, "batch_stats": v["batch_stats"]}, y, train=True,
                         rngs={"stochastic_depth": rng}, mutable=["batch_stats", "intermediates"])
    gate = state["intermediates"]["blocks"]["block"]["gate"][0][0]
    return jnp.sum(out ** 2), (state["batch_stats"], gate)

  step = jax.jit(jax.grad(loss, has_aux=True))
  assert "stablehlo.case" in step.lower(v["params"], jax.random.key(0)).as_text()
  seen = set()
  for rng in jax.random.split(jax.random.key(5), 8):
    grads, (stats, gate) = step(v["params"], rng)
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in
             zip(jax.tree.leaves(stats), jax.tree.leaves(v["batch_stats"]))]
    grad_norm = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads))
    if gate == 0:
      assert max(moved) == 0.0 and grad_norm == 0.0
    else:
      assert min(moved) > 0.0 and grad_norm > 0.0
    seen.add(float(gate))
  assert seen == {0.0, 1.0}


def test_remat_gives_the_same_values_and_gradients(x):
  plain, remat = tiny(), tiny(remat=True)
  v = plain.init(jax.random.key(0), x, train=False)

  def loss(model, params):
    out, _ = model.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                         mutable=["batch_stats"])
    return jnp.sum(out ** 2)

  g1 = jax.jit(jax.grad(functools.partial(loss, plain)))(v["params"])
  g2 = jax.jit(jax.grad(functools.partial(loss, remat)))(v["params"])
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_registry_lists_the_family_and_rejects_unknowns():
  names = list_models()
  for n in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "cifar_resnet20",
            "cifar_resnet32", "cifar_resnet44", "cifar_resnet56", "cifar_resnet110"):
    assert n in names
  assert {"step_size", "share_weights", "stochastic_depth", "remat"} <= set(model_options("resnet50"))
  with pytest.raises(ValueError, match=r"unknown model 'resnet51'.*resnet50"):
    create_model("resnet51", num_classes=10)
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['step'\]"):
    create_model("resnet18", num_classes=10, step=0.5)


@pytest.mark.parametrize("bad,err,match", [
    (jnp.zeros((8, 8, 3)), ValueError, r"x: expected images of rank 4 .* got shape \(8, 8, 3\)"),
    (jnp.zeros((1, 8, 8, 3), jnp.uint8), TypeError, "floating-point.*uint8"),
])
def test_bad_images_fail_with_a_clear_error(bad, err, match):
  with pytest.raises(err, match=match):
    tiny().init(jax.random.key(0), bad, train=False)
