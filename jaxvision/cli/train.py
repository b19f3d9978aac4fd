"""The training command line: `jaxvision-train --config NAME|FILE --workdir DIR [--config.KEY=VALUE]`
(in a clone also `python -m train ...`); `jaxvision-train --list-configs` lists the configs' names.

Trains (resuming from DIR's latest checkpoint), writing DIR/metrics.jsonl, TensorBoard events,
checkpoints, DIR/summary.json and DIR/curves.png, and prints a one-line summary.
`--config` takes a config file or the name of one in jaxvision/configs (`--config cifar10`). Every
key can be set with `--config.KEY=VALUE`, and so can every option of the chosen model, declared
in the config file or not (`--config.model.options.dtype=bfloat16`; VALUE is read as a Python
literal, else taken as a string). The whole config is checked before anything is compiled.
Errors are one line each on stderr (`error: config.optimizer.learning_rate: got -0.1; expected a
number > 0`): exit status 2 for a bad command line or config, 1 for a failed run (an I/O failure
names its cause and path); `--debug` shows the traceback instead.
Multi-host: start the same command on every host (or process); `--config.distributed.*`
(coordinator_address, num_processes, process_id) join them where JAX does not detect the
cluster itself (docs/SCALING.md).
"""

import ast
import dataclasses
import errno
import logging as std_logging
import os
import pathlib
import re
import sys
import traceback

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxvision import configs

OPTIONS = "--config.model.options."

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file or the name of one in jaxvision/configs (cifar10).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.DEFINE_bool("debug", False, "Show the traceback of an error instead of one line.")
flags.DEFINE_bool("list_configs", False, "Print the names of the configs (--list-configs) and exit.")
flags.mark_flags_as_required(["config", "workdir"])


class UsageError(Exception):
  """A bad command line or config: one line per problem (exit status 2)."""

  def __init__(self, lines):
    self.lines = list(lines)
    super().__init__("\n".join(self.lines))


@dataclasses.dataclass
class Args:
  """What `parse` hands to `main`: the remaining arguments and the model options given."""

  argv: list
  options: dict


def _fail(lines, status: int, exc: BaseException | None = None, *, now: bool = False):
  """Prints `lines` as `error: ...` and exits with `status`; with --debug, raises `exc`.
  `now`: without running at-exit handlers (after an I/O failure they would only retry the
  writes that failed, each printing its traceback)."""
  if exc is not None and _debug_requested(sys.argv):
    raise exc
  for line in lines:
    print(f"error: {line}", file=sys.stderr)
  if now:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
  sys.exit(status)


class _NoTracebacks(std_logging.Filter):
  """Keeps logged errors (e.g. orbax's failed background save) to their message line."""

  def filter(self, record):
    record.exc_info = record.exc_text = record.stack_info = None
    return True


def _literal(text: str):
  """A command-line VALUE: a Python literal, true/false, else the string itself."""
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _split_options(args: list) -> tuple[list, dict]:
  """Takes `--config.model.options.KEY=VALUE` (or `... KEY VALUE`) out of `args`."""
  rest, options, i = [], {}, 0
  while i < len(args):
    arg, i = args[i], i + 1
    if not arg.startswith(OPTIONS):
      rest.append(arg)
      continue
    key, eq, text = arg[len(OPTIONS):].partition("=")
    if not eq:
      if i == len(args) or args[i].startswith("-"):
        raise UsageError([f"{arg}: got no value; expected {arg}=VALUE"])
      text, i = args[i], i + 1
    if not all(part.isidentifier() for part in key.split(".")):
      raise UsageError([f"config.model.options.{key}: got {key!r}; expected an option name"])
    options[key] = _literal(text)
  return rest, options


def _flag_error_lines(e: Exception) -> list:
  """absl's flag errors, one line each; a bad `--config.KEY=VALUE` in the house style."""
  from jaxvision.training.config import expected_type
  lines = []
  for line in str(e).splitlines():
    bad = re.match(r"flag --config\.([\w.]+)=(.*?): ", line)
    lines.append(line if bad is None else
                 f"config.{bad[1]}: got {bad[2]!r}; expected {expected_type(bad[1])}")
  return lines


def _config_file_error(e: Exception, path: str) -> str:
  """One line for an exception raised while loading the config file `path`."""
  lines = [f.lineno for f in traceback.extract_tb(e.__traceback__)
           if pathlib.Path(f.filename).resolve() == pathlib.Path(path).resolve()]
  where = f"--config {path}" + (f", line {lines[-1]}" if lines else "")
  text = " ".join(str(e).replace("\\n", " ").split())
  key = re.search(r'Key "(\w+)" does not exist', text)
  hint = re.search(r'Did you mean "(\w+)"', text)
  if key:  # a locked config refuses a key it does not have
    return f"{where}: unknown key {key[1]}" + (f"; did you mean {hint[1]}?" if hint else "")
  return f"{where}: {type(e).__name__}: {text}"


def _override_errors(args: list) -> list:
  """Error lines of `--config.KEY=...` arguments whose KEY the config does not have."""
  from jaxvision.training.config import key_error
  errors = []
  for arg in args:
    name = arg.lstrip("-").split("=", 1)[0]
    name = name[2:] if name.startswith("noconfig.") else name
    if name.startswith("config."):
      errors.append(key_error(name[len("config."):]))
  return [e for e in errors if e]


def _debug_requested(argv: list) -> bool:
  return any(a.split("=")[0] in ("--debug", "-debug") and not a.lower().endswith(("=false", "=0"))
             for a in argv[1:])


def parse(argv: list) -> Args:
  """absl's flags parser for this program: every problem of the command line, one line each."""
  if any(a in ("--list-configs", "--list_configs") for a in argv[1:]):
    print("\n".join(configs.names()))
    sys.exit(0)
  try:
    args, options = _split_options(argv[1:])
    try:
      args, config_file = configs.resolve_argv(args)
    except ValueError as e:
      raise UsageError([str(e)]) from e
    errors = _override_errors(args)
    if errors:
      raise UsageError(errors)
    sys.argv = [argv[0], *args]  # config_flags reads its overrides from sys.argv too
    try:
      rest = flags.FLAGS(sys.argv)
      _CONFIG.value  # loads the config file: an error in it is a usage error
    except flags.Error as e:
      raise UsageError(_flag_error_lines(e)) from e
    except Exception as e:  # raised by the config file
      raise UsageError([_config_file_error(e, config_file)]) from e
    return Args(rest, options)
  except UsageError as e:
    _fail(e.lines, 2, e)


def set_model_options(config, options: dict) -> None:
  """Sets `config.model.options.KEY = VALUE` for each command-line option (dotted KEYs reach
  into options that are groups, e.g. backbone_options.widths). The model checks the names."""
  node = config.model.options
  node.unlock()
  for key, value in options.items():
    *parents, last = key.split(".")
    target = node
    for part in parents:
      if part not in target or not isinstance(target[part], (ml_collections.ConfigDict, dict)):
        raise UsageError([f"config.model.options.{key}: config.model.options.{part} is not a "
                          "group of options in the config file; expected an option name"])
      target = target[part]
    if last in target:
      del target[last]  # free-form: the command line may change an option's type
    target[last] = value


def _os_error(e: BaseException) -> OSError | None:
  """The OSError that caused `e` (itself, its cause or context), if any."""
  seen = set()
  while e is not None and id(e) not in seen:
    if isinstance(e, OSError):
      return e
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  return None


# What I/O failures say when a library reports them in a message rather than as an OSError.
_IO_FAILURES = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EROFS, errno.EACCES,
                                                     errno.EDQUOT, errno.EIO))


def _io_line(e: OSError, workdir: str) -> str:
  cause = e.strerror or str(e) or type(e).__name__
  code = f" ({errno.errorcode[e.errno]})" if e.errno in errno.errorcode else ""
  path = e.filename if e.filename is not None else f"under the workdir {workdir}"
  return f"{cause}{code}: {path}" + (f" -> {e.filename2}" if e.filename2 else "")


def _failure(e: Exception, workdir: str) -> tuple[list, int]:
  """The error lines and exit status of an exception raised by the run."""
  io, lines = _os_error(e), str(e).splitlines() or [type(e).__name__]
  if isinstance(e, ValueError):  # bad input found while building the run (house style)
    if io is not None or any(text in str(e) for text in _IO_FAILURES):
      return [f"{lines[0]} (workdir {workdir})"], 1
    return lines, 2
  if io is not None:
    return [_io_line(io, workdir)], 1
  return [f"{type(e).__name__}: {lines[0]} (--debug shows the traceback)"], 1


def main(args: Args):
  if len(args.argv) > 1:
    _fail([f"unexpected arguments: {args.argv[1:]}; expected only flags"], 2)
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if not _debug_requested(sys.argv):
    logging.get_absl_handler().addFilter(_NoTracebacks())
  from jaxvision.training.config import validate_config
  config = _CONFIG.value
  try:
    set_model_options(config, args.options)
  except UsageError as e:
    _fail(e.lines, 2, e)
  errors = validate_config(config)
  if errors:
    _fail(errors, 2)

  from jaxvision.training import distributed
  from jaxvision.training.compilation_cache import enable_compilation_cache
  from jaxvision.training.fit import NonFiniteLoss, TrainingInterrupted, fit
  workdir = _WORKDIR.value
  try:
    enable_compilation_cache()  # a second run of the same config skips compilation
    s = fit(config, workdir)
  except TrainingInterrupted as e:
    print(f"interrupted: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  except NonFiniteLoss as e:
    _fail([str(e)], 1, e)
  except Exception as e:  # noqa: BLE001  one line each; --debug shows the traceback
    lines, status = _failure(e, workdir)
    _fail(lines, status, e, now=status == 1)  # 1: an I/O failure or a crash
  if not distributed.is_primary():  # one summary line per run
    return
  evals = ", ".join(f"eval {k} {v:.4f}" for k, v in s["eval"].items())
  best = "" if s["best_value"] is None else f", best {s['best_metric']} {s['best_value']:.4f} at step {s['best_step']}"
  print(f"done: {s['model']} on {s['dataset']}, {s['steps']} steps ({s['epochs']:.1f} epochs), "
        f"{s['num_params']:,} params, {evals}{best}, {s['seconds']:.0f}s; outputs in {s['workdir']}")


def run():
  """The console script `jaxvision-train` (and `python -m train` in a clone)."""
  app.run(main, flags_parser=parse)


if __name__ == "__main__":
  run()
