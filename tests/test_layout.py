"""The package layout: imports flow one way through the pipeline stages.

data -> (generation | visualization) -> model -> training -> apps ->
benchmarks (which measure the apps too). A module may import its own stage
and the stages below it, never one above it or a sibling stage of the same
rank. The original's modules stay at the top level (the drop-in surface),
each in its stage.
"""

import ast
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest

PACKAGE = "learning_to_simulate"
ROOT = pathlib.Path(__file__).resolve().parent.parent / PACKAGE

# Stage of each subpackage, and its rank: imports go to lower ranks only.
STAGE_RANKS = {
    "data": 0,
    "generation": 1,
    "visualization": 1,
    "model": 2,
    "training": 3,
    "apps": 4,
    "benchmarks": 5,
}
# The original's modules, at the top level, and their stages.
TOP_LEVEL = {
    "__init__": "data",
    "reading_utils": "data",
    "connectivity_utils": "data",
    "noise_utils": "data",
    "graph_network": "model",
    "learned_simulator": "model",
    "train": "apps",
    "render_rollout": "apps",
    "model_demo": "apps",
    "api": "apps",
}


def stage_of(module: str) -> str:
  """Stage of a dotted module name below the package, e.g. `training.x`."""
  head = module.split(".")[0]
  if head in STAGE_RANKS:
    return head
  if head in TOP_LEVEL:
    return TOP_LEVEL[head]
  raise KeyError(f"{PACKAGE}.{module} belongs to no stage: add it to "
                 "STAGE_RANKS or TOP_LEVEL")


def package_imports(path: pathlib.Path):
  """Yields `(line, module)` for each import of a package module in `path`."""
  tree = ast.parse(path.read_text(), str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
      base = node.module[len(PACKAGE) + 1:]
      for alias in node.names:
        target = f"{base}.{alias.name}" if base else alias.name
        yield node.lineno, target
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith(PACKAGE + "."):
          yield node.lineno, alias.name[len(PACKAGE) + 1:]


def modules():
  """`(dotted name below the package, path)` of every module."""
  for path in sorted(ROOT.rglob("*.py")):
    relative = path.relative_to(ROOT).with_suffix("")
    yield ".".join(relative.parts), path


class LayoutTest(absltest.TestCase):

  def test_imports_flow_one_way(self):
    upward = []
    for name, path in modules():
      own = stage_of(name)
      for line, target in package_imports(path):
        other = stage_of(target)
        if other != own and STAGE_RANKS[other] >= STAGE_RANKS[own]:
          upward.append(f"{path.relative_to(ROOT.parent)}:{line} ({own}) "
                        f"imports {target} ({other})")
    self.assertEqual(upward, [], "imports against the pipeline order:\n" +
                     "\n".join(upward))

  def test_checker_sees_an_upward_import(self):
    # The rule itself: training may import data and model, not apps.
    for source, target, allowed in (("training.trainer", "data.common", True),
                                    ("training.trainer", "graph_network",
                                     True),
                                    ("training.trainer", "apps.demo", False),
                                    ("model.graph_ops", "training.config",
                                     False),
                                    ("visualization.scene",
                                     "generation.scenes", False)):
      own, other = stage_of(source), stage_of(target)
      self.assertEqual(other == own or STAGE_RANKS[other] < STAGE_RANKS[own],
                       allowed, (source, target))

  def test_every_subpackage_says_what_it_holds(self):
    for stage in STAGE_RANKS:
      init = ROOT / stage / "__init__.py"
      self.assertTrue(init.exists(), f"{init} is missing")
      docstring = ast.get_docstring(ast.parse(init.read_text()))
      self.assertTrue(docstring, f"{init} has no docstring")
      # It names each of its modules.
      for module in (ROOT / stage).glob("*.py"):
        if module.stem != "__init__":
          self.assertIn(f"`{module.stem}`", docstring,
                        f"{init} does not mention {module.stem}")

  def test_modules_import_together(self):
    # Command lines register their flags when run, not when imported, so a
    # program (or the test suite) can import any of them side by side. The
    # original's `train` and `model_demo` keep module-level flags.
    names = [f"{PACKAGE}.{name}" for name, _ in modules()
             if name not in ("train", "model_demo") and
             not name.endswith("__init__")]
    code = "import importlib\n" + "".join(
        f"importlib.import_module({name!r})\n" for name in names)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True,
        text=True, timeout=300, check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT.parent),
                 TF_CPP_MIN_LOG_LEVEL="2"))
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])

  def test_only_the_original_modules_are_at_the_top(self):
    top = {path.stem for path in ROOT.glob("*.py")}
    self.assertEqual(top, set(TOP_LEVEL))
    self.assertTrue(os.path.exists(ROOT / "download_dataset.sh"))


if __name__ == "__main__":
  absltest.main()
