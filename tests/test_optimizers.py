"""What the optimizer builder (`jaxvision.training.optim.make_optimizer`) claims, in numbers:
gradient clipping by global norm (`optimizer.grad_clip_norm`), Nesterov momentum
(`optimizer.nesterov`), and weight decay on kernels only, coupled with `sgd` (added to the
gradient, through momentum) and decoupled with `adamw` (docs/TRANSFER_LEARNING.md,
"Regularisation")."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.losses import kernel_mask, l1_penalty
from jaxvision.models import create_model
from jaxvision.training import optim
from jaxvision.training.config import default_config

LR, WD = 0.1, 0.05


def opt_config(**kw):
  c = default_config().optimizer
  c.unlock()
  c.update(dict(schedule="constant", learning_rate=LR, weight_decay=0.0, momentum=0.0))
  c.update(kw)
  return c


def build(**kw) -> optax.GradientTransformation:
  return optim.make_optimizer(opt_config(**kw), optax.constant_schedule(LR))


def params():
  """A conv kernel and bias, a dense kernel and bias and a BatchNorm scale and bias."""
  return {"conv": {"kernel": jnp.arange(1.0, 9.0).reshape(1, 2, 2, 2) / 8, "bias": jnp.array([0.5, -1.0])},
          "fc": {"kernel": jnp.array([[1.0, -2.0], [3.0, 0.5]]), "bias": jnp.array([2.0, 1.0])},
          "bn": {"scale": jnp.array([1.5, 0.7]), "bias": jnp.array([0.3, -0.2])}}


def grads(scale=1.0):
  p = params()
  leaves, tree = jax.tree.flatten(p)
  rs = np.random.RandomState(0)
  return jax.tree.unflatten(tree, [jnp.asarray(scale * rs.randn(*l.shape), jnp.float32) for l in leaves])


def global_norm(tree) -> float:
  return float(np.sqrt(sum(np.sum(np.square(l)) for l in jax.tree.leaves(tree))))


def assert_trees_close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


def one_update(tx, g, p=None):
  p = params() if p is None else p
  updates, _ = tx.update(g, tx.init(p), p)
  return updates


# ------------------------------------------------------------------------- gradient clipping


def test_the_config_key_is_grad_clip_norm_and_off_by_default():
  assert default_config().optimizer.grad_clip_norm == 0.0
  g = grads(10.0)  # a large gradient: not clipped when the key is 0
  assert_trees_close(one_update(build(), g), jax.tree.map(lambda x: -LR * x, g), rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_clipping_above_the_threshold_uses_the_globally_rescaled_gradient(name):
  g = grads(3.0)
  norm = global_norm(g)
  clip = norm / 4  # the whole gradient is scaled by 1/4, every leaf alike (global, not per leaf)
  clipped = jax.tree.map(lambda x: x * (clip / norm), g)
  got = one_update(build(name=name, grad_clip_norm=clip), g)
  want = one_update(build(name=name), clipped)  # the same optimizer, unclipped, on the clipped g
  assert_trees_close(got, want, rtol=1e-5, atol=1e-7)
  if name == "sgd":  # by hand: -lr * g * clip / |g|
    assert_trees_close(got, jax.tree.map(lambda x: -LR * x * clip / norm, g), rtol=1e-5)
    assert global_norm(got) == pytest.approx(LR * clip, rel=1e-5)


def test_clipping_is_inactive_below_the_threshold():
  g = grads(0.1)
  got = one_update(build(grad_clip_norm=global_norm(g) * 1.01), g)
  assert_trees_close(got, jax.tree.map(lambda x: -LR * x, g), rtol=1e-6)


def test_clipping_is_global_not_per_leaf():
  """One large leaf shrinks the small ones too (per-leaf clipping would leave them)."""
  g = {"a": jnp.array([30.0, 40.0]), "b": jnp.array([0.3, 0.4])}  # norms 50 and 0.5
  p = jax.tree.map(jnp.zeros_like, g)
  got = one_update(build(grad_clip_norm=1.0), g, p)
  scale = 1.0 / np.sqrt(50.0**2 + 0.5**2)
  np.testing.assert_allclose(got["b"], -LR * scale * np.array([0.3, 0.4]), rtol=1e-5)
  np.testing.assert_allclose(got["a"], -LR * scale * np.array([30.0, 40.0]), rtol=1e-5)


# ------------------------------------------------------------------------------- Nesterov


def test_nesterov_matches_optax_and_the_hand_computed_two_steps():
  m = 0.9
  p = {"w": jnp.array([1.0, -2.0, 0.5])}
  g1, g2 = {"w": jnp.array([0.3, -0.1, 2.0])}, {"w": jnp.array([-0.5, 0.4, 1.0])}

  def two_steps(tx):
    s = tx.init(p)
    u1, s = tx.update(g1, s, p)
    u2, _ = tx.update(g2, s, optax.apply_updates(p, u1))
    return np.asarray(u1["w"]), np.asarray(u2["w"])

  a, b = np.asarray(g1["w"]), np.asarray(g2["w"])
  # Nesterov: v_t = g_t + m v_{t-1}; update = -lr (g_t + m v_t).
  nesterov = (-LR * (a + m * a), -LR * (b + m * (b + m * a)))
  # Heavy ball: update = -lr v_t.
  heavy_ball = (-LR * a, -LR * (b + m * a))

  got = two_steps(build(momentum=m, nesterov=True))
  ref = two_steps(optax.sgd(LR, momentum=m, nesterov=True))
  plain = two_steps(build(momentum=m, nesterov=False))
  for x, y, z in zip(got, nesterov, ref):
    np.testing.assert_allclose(x, y, rtol=1e-6)
    np.testing.assert_allclose(x, z, rtol=1e-6)
  for x, y in zip(plain, heavy_ball):
    np.testing.assert_allclose(x, y, rtol=1e-6)
  assert not np.allclose(got[1], plain[1], rtol=1e-3)  # the flag changes the update


# ------------------------------------------------------------------------------ weight decay


def test_adamw_decay_is_decoupled_a_zero_gradient_still_shrinks_kernels_only():
  p = params()
  zero = jax.tree.map(jnp.zeros_like, p)
  got = one_update(build(name="adamw", weight_decay=WD), zero)
  for layer in ("conv", "fc"):
    np.testing.assert_allclose(got[layer]["kernel"], -LR * WD * p[layer]["kernel"], rtol=1e-6)
    np.testing.assert_array_equal(got[layer]["bias"], 0.0)
  np.testing.assert_array_equal(got["bn"]["scale"], 0.0)
  np.testing.assert_array_equal(got["bn"]["bias"], 0.0)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_adamw_decay_term_does_not_depend_on_the_gradient_scale(scale):
  """AdamW's update = Adam's update of g + (-lr wd w) on kernels, whatever |g| is (coupled L2
  through Adam would be divided by sqrt(v) and shrink as |g| grows)."""
  p, g = params(), grads(scale)
  got = one_update(build(name="adamw", weight_decay=WD), g)
  adam = one_update(optax.adam(LR, b1=0.9, b2=0.999), g)
  decay = jax.tree.map(lambda a, b: a - b, got, adam)
  for layer in ("conv", "fc"):
    np.testing.assert_allclose(decay[layer]["kernel"], -LR * WD * p[layer]["kernel"], rtol=1e-4,
                               atol=1e-7)
  for leaf in (decay["conv"]["bias"], decay["fc"]["bias"], decay["bn"]["scale"], decay["bn"]["bias"]):
    np.testing.assert_allclose(leaf, 0.0, atol=1e-7)


def test_sgd_decay_is_added_to_the_gradient_and_goes_through_momentum():
  m = 0.9
  p = params()
  zero = jax.tree.map(jnp.zeros_like, p)
  tx = build(name="sgd", weight_decay=WD, momentum=m)
  s = tx.init(p)
  u1, s = tx.update(zero, s, p)
  p1 = optax.apply_updates(p, u1)
  u2, _ = tx.update(zero, s, p1)
  for layer in ("conv", "fc"):
    w0, w1 = p[layer]["kernel"], p1[layer]["kernel"]
    np.testing.assert_allclose(u1[layer]["kernel"], -LR * WD * w0, rtol=1e-6)
    # The second step carries the first step's decay in the momentum trace.
    np.testing.assert_allclose(u2[layer]["kernel"], -LR * (WD * w1 + m * WD * w0), rtol=1e-6)
    assert not np.allclose(u2[layer]["kernel"], -LR * WD * w1, rtol=1e-3)
  for leaf in (u1["conv"]["bias"], u1["fc"]["bias"], u1["bn"]["scale"], u1["bn"]["bias"],
               u2["conv"]["bias"], u2["fc"]["bias"], u2["bn"]["scale"], u2["bn"]["bias"]):
    np.testing.assert_array_equal(leaf, 0.0)
  # Clipping comes before the decay is added: the decay term is never clipped.
  clipped = build(name="sgd", weight_decay=WD, grad_clip_norm=1e-6)
  np.testing.assert_allclose(one_update(clipped, zero)["fc"]["kernel"], -LR * WD * p["fc"]["kernel"],
                             rtol=1e-6)


def test_decay_mask_on_a_real_resnet_marks_kernels_only():
  """Every leaf named `kernel` is decayed, no `bias` or `scale` is, in a ResNet with scanned
  stages (block parameters stacked on a leading axis) as well."""
  model = create_model("cifar_resnet20", num_classes=10)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))
  mask = kernel_mask(v["params"])
  wrong = [jax.tree_util.keystr(path) for path, decayed in jax.tree_util.tree_leaves_with_path(mask)
           if decayed != (path[-1].key == "kernel")]
  assert not wrong, wrong
  # The L1 penalty covers the same leaves.
  ones = jax.tree.map(lambda a: jnp.ones(a.shape), v["params"])
  kernels = sum(a.size for path, a in jax.tree_util.tree_leaves_with_path(v["params"])
                if path[-1].key == "kernel")
  assert float(l1_penalty(ones)) == kernels
