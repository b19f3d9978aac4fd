"""Multi-host start-up: `jax.distributed.initialize()` from the config, flags or environment.

Every process of a multi-host run executes the same program; after initialisation
`jax.devices()` lists the devices of all processes, `jax.process_index()` tells a process which
shard of the data to read, and the jit wrapper (`parallel.ShardedJit`) trains on the global batch.

What JAX finds by itself when `initialize()` gets no arguments: Cloud TPU VMs (a pod slice's
workers, from the TPU metadata), SLURM (`srun`: SLURM_JOB_ID, SLURM_NTASKS, SLURM_PROCID, ...)
and Open MPI (`mpirun`: OMPI_MCA_orte_hnp_uri); `$JAX_COORDINATOR_ADDRESS` and
`$JAX_LOCAL_DEVICE_IDS` stand in for the arguments of the same names. Elsewhere (several
processes started by hand) give `coordinator_address`, `num_processes` and `process_id`.
See docs/SCALING.md.
"""

from __future__ import annotations

import os
from typing import Any

import jax

MODES = ("auto", "on", "off")


def _get(config: Any, key: str, default):
  value = None if config is None else config.get(key, None)
  return default if value is None else value


def _cluster_processes() -> int:
  """Processes of a SLURM or Open MPI job this process belongs to (1 outside one)."""
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
  if all(k in os.environ for k in slurm):
    return int(os.environ["SLURM_NTASKS"])
  if "OMPI_MCA_orte_hnp_uri" in os.environ:
    return int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
  return 1


def _check(mode, address, num_processes, process_id, local_device_ids) -> None:
  if mode not in MODES:
    raise ValueError(f"config.distributed.initialize: expected one of {MODES}, got {mode!r}")
  if address and (":" not in address or not address.rsplit(":", 1)[1].isdigit()):
    raise ValueError(f"config.distributed.coordinator_address: expected 'host:port' (process "
                     f"0's address and a free port), got {address!r}")
  if not isinstance(num_processes, int) or num_processes < 0:
    raise ValueError("config.distributed.num_processes: expected an int >= 0 (0: detect), got "
                     f"{num_processes!r}")
  if not isinstance(process_id, int) or process_id < -1:
    raise ValueError("config.distributed.process_id: expected an int >= -1 (-1: detect), got "
                     f"{process_id!r}")
  if num_processes and process_id >= num_processes:
    raise ValueError(f"config.distributed.process_id: {process_id} is not below num_processes "
                     f"{num_processes}; expected 0 ... {num_processes - 1}")
  if not all(isinstance(i, int) and i >= 0 for i in local_device_ids):
    raise ValueError("config.distributed.local_device_ids: expected device ids (ints >= 0), got "
                     f"{local_device_ids!r}")


def initialize(config: Any = None) -> bool:
  """Joins this process to a multi-host run as `config` (a `config.distributed` block) says.

  Keys (all optional): `initialize` 'auto' (join when a coordinator address or more than one
  process is given, in the config or `$JAX_COORDINATOR_ADDRESS`, or when this is one task of
  a multi-process SLURM/Open MPI job), 'on' (always call `jax.distributed.initialize`, letting
  JAX detect what is not given: Cloud TPU pod slices, SLURM, Open MPI) or 'off';
  `coordinator_address` ('host:port' of process 0), `num_processes` (0: detect), `process_id`
  (-1: detect), `local_device_ids` (the devices this process drives; (): all it sees).

  Must run before anything touches a JAX device. A no-op on one process and when JAX's
  distributed runtime is already up. Returns whether this call initialised it.
  """
  mode = _get(config, "initialize", "auto")
  address = _get(config, "coordinator_address", "")
  num_processes = _get(config, "num_processes", 0)
  process_id = _get(config, "process_id", -1)
  local_device_ids = tuple(_get(config, "local_device_ids", ()))
  _check(mode, address, num_processes, process_id, local_device_ids)
  if jax.distributed.is_initialized():
    if num_processes and jax.process_count() != num_processes:
      raise ValueError(f"config.distributed.num_processes: {num_processes}, but JAX is already "
                       f"initialised with {jax.process_count()} processes")
    return False
  wanted = (mode == "on" or (mode == "auto" and (
      address or os.environ.get("JAX_COORDINATOR_ADDRESS") or num_processes > 1
      or _cluster_processes() > 1)))
  if not wanted:
    return False
  jax.distributed.initialize(coordinator_address=address or None,
                             num_processes=num_processes or None,
                             process_id=None if process_id < 0 else process_id,
                             local_device_ids=list(local_device_ids) or None)
  return True


def is_primary() -> bool:
  """True on the process that writes checkpoint metadata, metrics, plots and summaries."""
  return jax.process_index() == 0
