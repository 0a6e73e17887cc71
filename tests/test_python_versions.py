"""The supported Pythons (3.11, 3.12, 3.13): the pins resolve for each, and
`scripts/setup_env.sh` picks and checks the interpreter.

The resolver test asks pip, for every supported version other than the one
running, which wheels it would install for `requirements.txt` and the
package's extras, without installing anything (`pip install --dry-run
--python-version`). Every pin must be met by a binary wheel for that
Python on this platform; graph-nets 1.1.0 is the exception, a pure-Python
source distribution, so its own requirements are resolved in its place. It
needs the package registry, as the install before it does.
"""

import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from packaging import requirements as requirements_lib
from packaging import specifiers
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETUP_ENV = ROOT / "scripts" / "setup_env.sh"
SUPPORTED = ("3.11", "3.12", "3.13")
# Pure-Python source distributions: resolved through their requirements.
SOURCE_ONLY = ("graph-nets",)


def _python_requires() -> specifiers.SpecifierSet:
  text = (ROOT / "setup.py").read_text()
  match = re.search(r'python_requires="([^"]+)"', text)
  if not match:
    raise AssertionError("setup.py has no python_requires")
  return specifiers.SpecifierSet(match.group(1))


def resolver_requirements() -> list[str]:
  """`requirements.txt` and every extra of the installed package, with each
  source-only pin replaced by that distribution's own requirements."""
  lines = []
  for entry in importlib.metadata.requires("learning_to_simulate") or []:
    requirement = requirements_lib.Requirement(entry)
    if canonicalize_name(requirement.name) in SOURCE_ONLY:
      lines.extend(importlib.metadata.requires(requirement.name) or [])
      continue
    # Extras are wanted too: drop their `extra == "..."` markers.
    requirement.marker = None
    lines.append(str(requirement))
  return lines


def pinned_versions() -> dict[str, str]:
  """`{canonical name: version}` of every `==` pin the package declares."""
  pins = {}
  for entry in importlib.metadata.requires("learning_to_simulate") or []:
    requirement = requirements_lib.Requirement(entry)
    exact = [s.version for s in requirement.specifier if s.operator == "=="]
    if exact:
      pins[canonicalize_name(requirement.name)] = exact[0]
  return pins


class SupportedVersionsTest(unittest.TestCase):

  def test_python_requires_admits_exactly_the_supported_versions(self):
    spec = _python_requires()
    for version in SUPPORTED:
      self.assertIn(f"{version}.0", spec)
    self.assertNotIn("3.10.13", spec)
    self.assertNotIn("3.14.0", spec)

  def test_every_declared_dependency_is_pinned_exactly(self):
    # The resolver test below is only meaningful for exact pins.
    declared = {canonicalize_name(requirements_lib.Requirement(entry).name)
                for entry in importlib.metadata.requires(
                    "learning_to_simulate") or []}
    self.assertEqual(declared, set(pinned_versions()))
    self.assertIn("tensorflow", declared)
    self.assertIn("taichi", declared)  # The datagen extra.


class ResolverTest(unittest.TestCase):
  """pip's resolver, binary wheels only, for each other supported Python."""

  def _resolve_all(self, versions: list[str]) -> dict[str, dict[str, dict]]:
    """pip's resolution for each version, run side by side (the time is
    mostly the package index's answers): version -> name -> report item."""
    with tempfile.TemporaryDirectory() as scratch:
      requirements = os.path.join(scratch, "requirements.txt")
      with open(requirements, "w") as f:
        f.write("\n".join(resolver_requirements()) + "\n")
      processes = {}
      for version in versions:
        report = os.path.join(scratch, f"report{version}.json")
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
            "--ignore-installed", "--disable-pip-version-check",
            "--only-binary=:all:", "--python-version", version,
            "--target", os.path.join(scratch, f"target{version}"),
            "--report", report, "-r", requirements]
        # Into a file: a pipe no one reads while another process is waited
        # for could fill up.
        log = open(os.path.join(scratch, f"pip{version}.log"), "w+")
        processes[version] = (report, log, subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log))
      resolved = {}
      for version, (report, log, process) in processes.items():
        process.wait(timeout=600)
        with log:
          log.seek(0)
          self.assertEqual(
              process.returncode, 0,
              f"the pins do not resolve to wheels for Python {version}:\n"
              + log.read()[-3000:])
        with open(report) as f:
          installs = json.load(f)["install"]
        resolved[version] = {canonicalize_name(item["metadata"]["name"]): item
                             for item in installs}
    return resolved

  def test_pins_resolve_to_wheels(self):
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    others = [version for version in SUPPORTED if version != running]
    self.assertTrue(others)
    pins = pinned_versions()
    everyone = self._resolve_all(others)
    for version in others:
      with self.subTest(python=version):
        resolved = everyone[version]
        tag = "cp" + version.replace(".", "")
        for name, pin in pins.items():
          if name in SOURCE_ONLY:
            continue
          self.assertIn(name, resolved, f"{name} not resolved for {version}")
          self.assertEqual(resolved[name]["metadata"]["version"], pin)
          wheel = resolved[name]["download_info"]["url"].rsplit("/", 1)[-1]
          self.assertTrue(wheel.endswith(".whl"), wheel)
          python_tag = wheel.split("-")[-3]
          # A compiled wheel is for this Python (or the stable ABI).
          self.assertTrue(
              python_tag.startswith(("py3", "py2.py3")) or tag in python_tag
              or "abi3" in wheel, f"{wheel} for Python {version}")


def _stub(directory: str, name: str, version: str, log: str) -> str:
  """An executable `name` that answers like Python `version`.

  `--version` prints it; `-c CODE` runs CODE under the real interpreter
  with `sys.version_info` replaced by `version`; `-m venv DIR` makes
  `DIR/bin/python` a link to the stub; anything else is logged to `log`.
  """
  path = os.path.join(directory, name)
  major, minor = version.split(".")[:2]
  with open(path, "w") as f:
    f.write(f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
with open({log!r}, "a") as log:
  log.write(os.path.basename(os.path.realpath(sys.argv[0])) + " "
            + " ".join(args) + "\\n")
if args == ["--version"]:
  print("Python {version}")
elif args[:1] == ["-c"]:
  sys.exit(0 if (3, 11) <= ({major}, {minor}) <= (3, 13) else 1)
elif args[:2] == ["-m", "venv"]:
  os.makedirs(os.path.join(args[2], "bin"))
  os.symlink(os.path.realpath(sys.argv[0]),
             os.path.join(args[2], "bin", "python"))
""")
  os.chmod(path, 0o755)
  return path


class SetupEnvTest(unittest.TestCase):
  """`setup_env.sh`, run from a copy of the repository's scripts folder on
  stub interpreters (nothing is installed)."""

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.root)
    os.makedirs(os.path.join(self.root, "scripts"))
    shutil.copy(SETUP_ENV, os.path.join(self.root, "scripts"))
    self.bin = os.path.join(self.root, "stubs")
    os.makedirs(self.bin)
    self.log = os.path.join(self.root, "log")

  def _run(self, path_dirs, **env):
    environment = {"PATH": os.pathsep.join(path_dirs), "HOME": self.root,
                   **env}
    return subprocess.run(
        [shutil.which("bash"), os.path.join(self.root, "scripts",
                                            "setup_env.sh"), "test"],
        capture_output=True, text=True, env=environment, timeout=60)

  def _system_dirs(self):
    # bash and coreutils, without a directory that holds a python3.1x.
    dirs = []
    for tool in ("bash", "dirname"):
      directory = os.path.dirname(shutil.which(tool))
      if directory not in dirs:
        dirs.append(directory)
    return dirs

  def test_picks_the_newest_supported_python_on_path(self):
    for name, version in (("python3.11", "3.11.7"), ("python3.12", "3.12.1"),
                          ("python3.13", "3.13.5"), ("python3.14", "3.14.0")):
      _stub(self.bin, name, version, self.log)
    result = self._run([self.bin, *self._system_dirs()])
    self.assertEqual(result.returncode, 0, result.stderr)
    with open(self.log) as f:
      calls = f.read().splitlines()
    self.assertIn("python3.13 -m venv .venv", calls)
    self.assertFalse([c for c in calls if c.startswith("python3.14 -m")])
    # pip runs from the new environment, with the extras asked for.
    self.assertTrue([c for c in calls if c.startswith("python3.13 -m pip ")
                     and c.endswith("-e .[test]")], calls)

  def test_unsupported_python_is_one_line_naming_the_range(self):
    old = _stub(self.bin, "python3.10", "3.10.13", self.log)
    result = self._run([self.bin, *self._system_dirs()], PYTHON=old)
    self.assertEqual(result.returncode, 1)
    self.assertEqual(len(result.stderr.strip().splitlines()), 1,
                     result.stderr)
    self.assertRegex(result.stderr,
                     r"needs Python 3\.11, 3\.12 or 3\.13 .*Python 3\.10\.13")
    self.assertFalse(os.path.exists(os.path.join(self.root, ".venv")))

  def test_venv_of_an_unsupported_python_is_reported_not_reused(self):
    _stub(self.bin, "python3.13", "3.13.5", self.log)
    old = _stub(self.bin, "python3.10", "3.10.13", self.log)
    os.makedirs(os.path.join(self.root, ".venv", "bin"))
    os.symlink(old, os.path.join(self.root, ".venv", "bin", "python"))
    result = self._run([self.bin, *self._system_dirs()])
    self.assertEqual(result.returncode, 1)
    self.assertRegex(result.stderr, r"\.venv holds Python 3\.10\.13.*remove")


if __name__ == "__main__":
  unittest.main()
