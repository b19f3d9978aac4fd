"""The training configs (ml_collections): one file per setting, each with `get_config()`.

They ship in the package, so an installed wheel has them: `jaxvision-train --config NAME`,
`importlib.import_module("jaxvision.configs.NAME")`. `path` maps a name (or a file) to the file
that ml_collections' config flags load; in a clone, `train/configs` is a link to this folder.
"""

import pathlib

FOLDER = pathlib.Path(__file__).parent


def names() -> list[str]:
  """The configs' names (their file names without `.py`), sorted."""
  return sorted(p.stem for p in FOLDER.glob("*.py") if p.stem != "__init__")


def path(value: str) -> str:
  """`value` of a `--config` flag as ml_collections loads it: a config file (`FILE[:ARG]`) as
  given, or the name of a config here (`demo`, `demo.py`, `depth_study:mnist`) as its file."""
  file, sep, arg = value.partition(":")
  if pathlib.Path(value).is_file() or pathlib.Path(file).is_file():
    return value
  name = file[:-3] if file.endswith(".py") else file
  if "/" not in name and name in names():
    return f"{FOLDER / name}.py{sep}{arg}"
  raise ValueError(f"--config: got {value!r}; expected a config file or one of {names()}")


def resolve_argv(argv: list) -> tuple[list, str]:
  """`argv` with the value of `--config` (`--config X` or `--config=X`) replaced by `path(X)`,
  and the config file it names ('' when there is no --config)."""
  out, file = list(argv), ""
  for i, arg in enumerate(out):
    if arg in ("--config", "-config") and i + 1 < len(out):
      out[i + 1] = file = path(out[i + 1])
    elif arg.startswith(("--config=", "-config=")):
      flag, _, value = arg.partition("=")
      file = path(value)
      out[i] = f"{flag}={file}"
  return out, file.partition(":")[0]
