"""Optimizers and learning-rate schedules from the `optimizer` part of a config."""

from __future__ import annotations

import optax

from jaxvision.losses import kernel_mask

SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adamw")


def make_schedule(cfg, *, steps_per_epoch: int, total_steps: int, batch_size: int) -> optax.Schedule:
  """Linear warmup to the peak rate, then cosine decay to 0, step decay, or constant."""
  peak = cfg.learning_rate * (batch_size / 256 if cfg.lr_scaling else 1.0)
  warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
  rest = max(total_steps - warmup, 1)
  if cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(peak, rest)
  elif cfg.schedule == "step":
    bounds = {int(f * total_steps) - warmup: cfg.step_factor for f in cfg.step_epochs}
    main = optax.piecewise_constant_schedule(peak, {b: s for b, s in bounds.items() if b > 0})
  elif cfg.schedule == "constant":
    main = optax.constant_schedule(peak)
  else:
    raise ValueError(f"optimizer.schedule: expected one of {SCHEDULES}, got {cfg.schedule!r}")
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def make_optimizer(cfg, schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD (+momentum/nesterov, coupled L2 on kernels) or AdamW (decoupled decay on kernels)."""
  parts = []
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.name == "sgd":
    if cfg.weight_decay:
      parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=kernel_mask))
    parts.append(optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
  elif cfg.name == "adamw":
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay,
                             mask=kernel_mask))
  else:
    raise ValueError(f"optimizer.name: expected one of {OPTIMIZERS}, got {cfg.name!r}")
  return optax.chain(*parts)
