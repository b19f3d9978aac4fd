"""Run by test_multihost.py: one process of a multi-host training run on CPU host devices.

`--num_processes 2 --process_id i --coordinator ADDR` joins a two-process run through
`config.distributed`; `--emulate_hosts 2` instead runs one process holding all devices that
feeds the global batches the two processes would feed (their two data shards, concatenated).
Both train a tiny ResNet with the real fit loop, then call fit again on the same workdir: it
resumes at the last step, restoring the checkpoint on every process. Prints a JSON line.
"""

import argparse
import json
from unittest import mock

import jax
import numpy as np

from jaxvision import data
from jaxvision.data import pipeline
from jaxvision.training.config import default_config
from jaxvision.training.fit import fit

STEPS = 4


def config(args):
  c = default_config()
  c.dataset.data_dir = args.data_dir
  c.model.name = "resnet"
  c.model.options.update(stage_sizes=(1,), widths=(4,), stem="cifar", stem_width=4)
  c.batch_size = 32
  c.eval_batch_size = 360  # the whole digits test split in one batch
  c.num_train_steps = STEPS
  c.log_every_steps = 1
  c.eval_every_steps = c.checkpoint_every_steps = 2
  c.plot = False
  c.distributed.coordinator_address = args.coordinator
  c.distributed.num_processes = args.num_processes
  c.distributed.process_id = args.process_id
  return c


def hosts_batches(hosts):
  """`data.train_batches` as `hosts` processes would read it, concatenated into one batch."""

  def train_batches(dataset_config, global_batch_size, seed, start_step=0, *, normalize=True):
    streams = []
    for index in range(hosts):
      with mock.patch.object(jax, "process_index", return_value=index), \
           mock.patch.object(jax, "process_count", return_value=hosts):
        streams.append(pipeline.train_batches(dataset_config, global_batch_size, seed, start_step,
                                              normalize=normalize))
    for parts in zip(*streams):
      yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  return train_batches


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--data_dir", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--coordinator", default="")
  p.add_argument("--num_processes", type=int, default=0)
  p.add_argument("--process_id", type=int, default=-1)
  p.add_argument("--emulate_hosts", type=int, default=1)
  p.add_argument("--compilation_cache", default="")
  args = p.parse_args()
  if args.compilation_cache:  # the resumed fit compiles what the first one did
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  c = config(args)
  if args.emulate_hosts > 1:
    data.train_batches = hosts_batches(args.emulate_hosts)
  trained = fit(c, args.workdir, progress=False)
  resumed = fit(c, args.workdir, progress=False)
  print(json.dumps({"process_index": jax.process_index(), "process_count": jax.process_count(),
                    "devices": jax.device_count(), "local_devices": jax.local_device_count(),
                    "trained": trained["eval"], "resumed": resumed["eval"]}))


if __name__ == "__main__":
  main()
