"""The docs a newcomer navigates: links resolve, every flag is documented."""

import ast
import glob
import importlib
import os
import re

import tensorflow as tf

from learning_to_simulate.model import options

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted([os.path.join(_ROOT, "README.md"),
                os.path.join(_ROOT, "BENCHMARKS.md")] +
               glob.glob(os.path.join(_ROOT, "docs", "*.md")))
# Each command line and the page whose tables document its flags.
CLIS = (("learning_to_simulate.train", "docs/train_cli.md"),
        ("learning_to_simulate.render_rollout", "docs/rendering.md"),
        ("learning_to_simulate.generation.generate_dataset",
         "docs/datasets.md"),
        ("learning_to_simulate.data.convert_dataset", "docs/own_data.md"),
        ("learning_to_simulate.data.check_dataset", "docs/own_data.md"),
        ("learning_to_simulate.apps.demo", "README.md"),
        ("learning_to_simulate.apps.compare", "docs/metrics.md"))


def flag_names(module_name):
  """The flags a CLI module defines, read from its source (importing them
  all would define some names twice in one process)."""
  path = os.path.join(_ROOT, *module_name.split(".")) + ".py"
  with open(path) as f:
    source = f.read()
  names = re.findall(r"DEFINE_\w+\(\s*[\"'](\w+)[\"']", source)
  # A flag of its own class: flags.Flag(parser, serializer, "name", ...).
  names += re.findall(r"flags\.Flag\(\s*[^,]+,\s*[^,]+,\s*[\"'](\w+)[\"']",
                      source)
  return sorted(set(names + option_flag_names(source)))


def option_flag_names(source):
  """The flags `model.options.define_flags` makes of the classes a CLI
  lists in `_OPTION_CLASSES` (their modules are imported, not the CLI)."""
  tree = ast.parse(source)
  aliases = {alias.asname or alias.name: f"{node.module}.{alias.name}"
             for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for alias in node.names}
  names = []
  for node in tree.body:
    if (isinstance(node, ast.Assign) and
        getattr(node.targets[0], "id", None) == "_OPTION_CLASSES"):
      for element in node.value.elts:
        module = importlib.import_module(aliases[element.value.id])
        names += options.flag_names(getattr(module, element.attr)).values()
  return names


def without_code(text):
  """`text` with fenced code blocks and inline code spans blanked."""
  return re.sub(r"```.*?```", "", text, flags=re.S)


def slug(heading):
  """GitHub's anchor of a Markdown heading."""
  heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return heading.replace(" ", "-")


def anchors(path):
  found, counts = set(), {}
  with open(path) as f:
    for line in without_code(f.read()).split("\n"):
      match = re.match(r"^#{1,6} (.*)$", line)
      if match:
        name = slug(match.group(1))
        counts[name] = counts.get(name, -1) + 1
        found.add(name if not counts[name] else f"{name}-{counts[name]}")
  return found


def links(path):
  with open(path) as f:
    text = without_code(f.read())
  return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text)


class DocsTest(tf.test.TestCase):

  def test_readme_is_short_and_links_every_page(self):
    with open(os.path.join(_ROOT, "README.md")) as f:
      readme = f.read()
    self.assertLess(readme.count("\n"), 180)
    for page in glob.glob(os.path.join(_ROOT, "docs", "*.md")):
      self.assertIn(f"(docs/{os.path.basename(page)})", readme)

  def test_every_link_resolves(self):
    broken = []
    for page in PAGES:
      for target in links(page):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
          continue
        path, _, anchor = target.partition("#")
        resolved = (os.path.normpath(os.path.join(os.path.dirname(page),
                                                  path)) if path else page)
        where = f"{os.path.relpath(page, _ROOT)}: ({target})"
        if not os.path.exists(resolved):
          broken.append(f"{where}: no file {os.path.relpath(resolved, _ROOT)}")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(
            resolved):
          broken.append(f"{where}: no heading #{anchor}")
    self.assertEqual(broken, [])

  def test_the_library_page_names_every_module(self):
    # docs/library.md's table: `stage.module`, or `.module` after another
    # module of its row, or a top-level module by its name.
    with open(os.path.join(_ROOT, "docs", "library.md")) as f:
      page = f.read()
    package = os.path.join(_ROOT, "learning_to_simulate")
    for path in glob.glob(os.path.join(package, "**", "*.py"),
                          recursive=True):
      if os.path.basename(path) == "__init__.py":
        continue
      name = os.path.relpath(path, package)[:-3].replace(os.sep, ".")
      short = name.rsplit(".", 1)[-1]
      self.assertTrue(
          f"`{name}`" in page or f"`.{short}`" in page or
          ("." not in name and f"`{short}`" in page),
          f"docs/library.md does not name {name}")

  def test_every_flag_is_documented(self):
    missing = []
    for module_name, page in CLIS:
      names = flag_names(module_name)
      self.assertNotEmpty(names, module_name)
      with open(os.path.join(_ROOT, page)) as f:
        text = f.read()
      missing += [f"{page}: --{name} ({module_name})" for name in names
                  if not re.search(rf"--(no)?{name}\b", text)]
    self.assertEqual(missing, [])


if __name__ == "__main__":
  tf.test.main()
