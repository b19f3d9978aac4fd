"""The house's shape (docs/ARCHITECTURE.md): imports point down the layers, no import circles,
no module over 400 lines. Every import of jaxvision in jaxvision/ counts, at module level or
inside a function."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).parent.parent
PACKAGE = ROOT / "jaxvision"
MAX_LINES = 400
# Bottom to top; a module imports from its own layer or below. `plots` is a leaf (below).
LAYERS = {"nn": 0, "ops": 0, "models": 1, "convert": 1.5, "losses": 2, "metrics": 2, "data": 3,
          "training": 4, "configs": 4.5, "analysis": 5, "cli": 5}
LEAVES = ("plots",)


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str:
  """The module a dotted import name loads: itself, or the longest known prefix."""
  while name not in MODULES and "." in name:
    name = name.rsplit(".", 1)[0]
  return name


def imports_of(module: str) -> set[str]:
  """The jaxvision modules `module` imports anywhere in its source."""
  path = MODULES[module]
  package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      names = [f"{base}.{a.name}" for a in node.names] + [base]
    else:
      continue
    found |= {resolve(n) for n in names if n.split(".")[0] == "jaxvision"}
  found.discard(module)
  return {m for m in found if m in MODULES and m != "jaxvision"}


GRAPH = {m: imports_of(m) for m in MODULES}


def subpackage(module: str) -> str | None:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else None


def test_the_graph_is_read():  # guards the tests below against an empty or misparsed graph
  assert {"jaxvision.training.fit", "jaxvision.models.registry"} <= set(MODULES)
  assert "jaxvision.training.run" in GRAPH["jaxvision.training.fit"]
  assert "jaxvision.models" in GRAPH["jaxvision.training.run"]


def test_every_subpackage_has_a_layer():
  unknown = {subpackage(m) for m in MODULES} - set(LAYERS) - set(LEAVES) - {None}
  assert not unknown, f"give these subpackages a layer in LAYERS: {sorted(unknown)}"


def test_imports_point_down():
  bad = []
  for module, imported in sorted(GRAPH.items()):
    here = subpackage(module)
    for other in sorted(imported):
      there = subpackage(other)
      if here in LEAVES and there != here:
        bad.append(f"{module} -> {other} (a leaf imports nothing of jaxvision)")
      elif here in LAYERS and there in LAYERS and LAYERS[there] > LAYERS[here]:
        bad.append(f"{module} (layer {LAYERS[here]}) -> {other} (layer {LAYERS[there]})")
  assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def cycles(graph: dict) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_cycle_finder_finds_a_cycle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
  found = cycles(GRAPH)
  assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_modules_are_small():
  sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in MODULES.values()}
  big = [f"{p}: {n} lines" for p, n in sorted(sizes.items()) if n > MAX_LINES]
  assert not big, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(big)
