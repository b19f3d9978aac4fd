"""The depth study's outputs (jaxvision.analysis.depth_study): the per-seed CSV, the summary of
each run over its seeds (mean, std, 95% Student-t interval) as markdown and CSV."""

from __future__ import annotations

import csv
import math
import pathlib

from jaxvision.analysis.provenance import config_block, versions_line
from jaxvision.analysis.seeded_study import interval

RUN_KEYS = ("name", "middle", "N", "shared", "solver", "h")
COLUMNS = (*RUN_KEYS[:2], "seed", *RUN_KEYS[2:], "params", "test_accuracy", "best_accuracy",
           "epoch_s", "fit_s", "nfe_fwd", "nfe_bwd", "peak_mb", "temp_mb", "distance",
           "distance_init", "dtheta_mean", "dtheta_max", "dtheta_init", "error")
# Summarised over the seeds of a run (mean, std, 95% interval); the rest are the same per seed.
MEASURED = ("test_accuracy", "best_accuracy", "epoch_s", "fit_s", "nfe_fwd", "nfe_bwd", "peak_mb",
            "temp_mb", "distance", "distance_init", "dtheta_mean", "dtheta_max", "dtheta_init")


def _number(v) -> float | None:
  if v is None or v == "" or isinstance(v, bool):
    return None
  v = float(v)
  return None if math.isnan(v) else v


def summarize(rows: list[dict]) -> list[dict]:
  """One row per run (in the rows' order) over its seeds: the run's keys, `params`, `seeds`
  (that finished), `failed` ({seed: error}) and, per measured column, `seeded_study.interval`
  of its values ({n, mean, std, lo, hi}; n = 0 where no seed has a value) with the lowest and
  highest seed's value (`min`, `max`)."""
  out = []
  for name in dict.fromkeys(r["name"] for r in rows):
    mine = [r for r in rows if r["name"] == name]
    ok = [r for r in mine if not r.get("error")]
    line = {k: mine[0].get(k) for k in RUN_KEYS}
    line.update(params=ok[0].get("params") if ok else None, seeds=[r.get("seed") for r in ok],
                failed={r.get("seed"): r["error"] for r in mine if r.get("error")})
    for key in MEASURED:
      values = [v for v in (_number(r.get(key)) for r in ok) if v is not None]
      line[key] = {**interval(values), "min": min(values, default=float("nan")),
                   "max": max(values, default=float("nan"))}
    out.append(line)
  return out


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
  with path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
      w.writerow({k: "" if r.get(k) is None else r.get(k) for k in COLUMNS})


def write_summary_csv(summary: list[dict], path: pathlib.Path) -> None:
  """summary.csv: per run, `KEY_mean`, `KEY_std`, `KEY_lo`, `KEY_hi` (95% interval) of each
  measured column over the seeds that finished (`n_seeds`)."""
  cols = [*RUN_KEYS, "params", "n_seeds", "failed",
          *(f"{k}_{s}" for k in MEASURED for s in ("mean", "std", "lo", "hi"))]
  with path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    for line in summary:
      row = {k: line.get(k) for k in (*RUN_KEYS, "params")}
      row.update(n_seeds=len(line["seeds"]), failed=len(line["failed"]))
      for k in MEASURED:
        row.update({f"{k}_{s}": line[k][s] for s in ("mean", "std", "lo", "hi")})
      w.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                  for k, v in row.items()})


def _fmt(key: str, v) -> str:
  if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
    return ""
  if key in ("test_accuracy", "best_accuracy"):
    return f"{100 * v:.2f}"
  if key in ("distance", "distance_init", "dtheta_mean", "dtheta_max", "dtheta_init"):
    return f"{v:.2e}"
  if key == "h":
    return f"{v:.4g}"
  if key == "params":
    return f"{v:,}"
  if key in ("nfe_fwd", "nfe_bwd"):
    return f"{v:.1f}" if v != round(v) else f"{v:.0f}"
  if isinstance(v, float):
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
  return str(v)


def _cell(key: str, s: dict) -> str:
  """'mean +- std [lo, hi]' (95% interval) over the seeds; the value alone where the seeds agree
  or there is one."""
  if not s["n"]:
    return ""
  if s["n"] == 1 or s["min"] == s["max"]:
    return _fmt(key, s["mean"])
  return (f"{_fmt(key, s['mean'])} +- {_fmt(key, s['std'])} "
          f"[{_fmt(key, s['lo'])}, {_fmt(key, s['hi'])}]")


def markdown_table(rows: list[dict]) -> str:
  """One line per run of the per-seed `rows`: each measured column as mean +- std over the
  seeds and the 95% Student-t interval of the mean in brackets."""
  summary = summarize(rows)
  measured = [k for k in MEASURED if any(s[k]["n"] for s in summary)]
  keys = [k for k in RUN_KEYS if any(s.get(k) not in (None, "") for s in summary)]
  head = [*keys, "params", "seeds", *(f"{k} (%)" if k.endswith("accuracy") else k
                                      for k in measured)]
  if any(s["failed"] for s in summary):
    head.append("error")
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for s in summary:
    cells = [_fmt(k, s.get(k)) for k in keys]
    cells += [_fmt("params", s["params"]),
              f"{len(s['seeds'])}/{len(s['seeds']) + len(s['failed'])}"]
    cells += [_cell(k, s[k]) for k in measured]
    if "error" in head:
      cells.append("; ".join(f"seed {k}: {v}" for k, v in s["failed"].items()))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_markdown(rows: list[dict], meta: dict, path: pathlib.Path) -> None:
  opts = ", ".join(f"{k}={v}" for k, v in sorted(meta["model_options"].items()))
  load = lambda l: "/".join(f"{x:.1f}" for x in l)  # noqa: E731
  text = (f"# Depth study on {meta['dataset']}\n\n"
          f"`odenet` ({opts}); {meta['epochs']:g} epochs, batch {meta['batch_size']}, "
          f"{meta['optimizer']} lr {meta['learning_rate']:g}; seeds {list(meta['seeds'])}. "
          f"Device: {meta['device']}; {versions_line(meta)}. "
          f"Wall time {meta['wall_s'] / 60:.1f} min; load average (1/5/15 min) "
          f"{load(meta['load_before'])} before, {load(meta['load_after'])} after.\n\n"
          "One line per run: each measured column is the mean +- sample std over the seeds that "
          "finished (`seeds`: finished/all) and, in brackets, the 95% Student-t interval of the "
          "mean (a single value where the seeds agree); results.csv has every seed's row. "
          "Columns: N blocks at step h = T/N (residual) or the ODE solver; test accuracy at the "
          "end and the best over epochs; train time per epoch (median step x steps); total fit "
          "time (with compilation and evaluation); NFE of f per forward pass (ODE: mean over "
          "training) and per backward pass; peak "
          "and temporary memory of the compiled train step (XLA); relative distance of a "
          "shared-weight stage's output to the ODE solution on the same f, trained and at "
          "initialisation; for unshared weights, ||theta_{j+1} - theta_j|| / ||theta_j|| over "
          "the blocks j, its mean and max trained and its mean at initialisation.\n\n"
          + markdown_table(rows) + "\n\n" + config_block(meta))
  path.write_text(text)
