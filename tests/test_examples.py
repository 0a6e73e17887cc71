"""The examples a newcomer runs first: the notebook and the README's Python."""

import os
import re
import subprocess
import sys

import nbclient
import nbformat
import tensorflow as tf

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(_ROOT, "examples", "quickstart.ipynb")


def readme_python_blocks():
  """The README's ```python blocks that use `learning_to_simulate.api`."""
  with open(os.path.join(_ROOT, "README.md")) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  return [block for block in blocks if "from learning_to_simulate import api"
          in block]


class QuickstartNotebookTest(tf.test.TestCase):

  def test_stored_without_outputs_and_runs_top_to_bottom(self):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
      self.assertEqual(cell.outputs, [])
      self.assertIsNone(cell.execution_count)
    workdir = self.create_tempdir().full_path
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": workdir}})
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2",
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    with client.setup_kernel(env=env):
      for index, cell in enumerate(notebook.cells):
        client.execute_cell(cell, index)  # Raises on the first error.
    displayed = [kind for cell in code for output in cell.outputs
                 if output.output_type == "display_data"
                 for kind in output.data]
    self.assertIn("image/gif", displayed)  # The animation, inline.
    self.assertIn("image/png", displayed)  # The physics plot.
    printed = "".join(output.text for cell in code for output in cell.outputs
                      if output.output_type == "stream" and
                      output.name == "stdout")
    ratio = float(re.search(r"model / better baseline: ([0-9.]+)",
                            printed).group(1))
    self.assertLess(ratio, 0.15)  # The shipped model (test_pretrained).
    # The three-material model, on each of its 4 test trajectories.
    self.assertLen(re.findall(r"test trajectory \d \(types \[\d, \d\]\): model "
                              r"/ better baseline 0\.\d+", printed), 4)
    self.assertRegex(printed, r"wrote .*my_dataset: train 3, valid 1, test 1 "
                     r"trajectories of 64 particles, 40 frames, dim 2")
    self.assertIn("3 train trajectories of (40, 64, 2)", printed)


class ReadmePythonTest(tf.test.TestCase):

  def test_readme_examples_run(self):
    blocks = readme_python_blocks()
    self.assertNotEmpty(blocks)
    workdir = self.create_tempdir().full_path
    for block in blocks:
      result = subprocess.run(
          [sys.executable, "-c", block], cwd=workdir, capture_output=True,
          text=True, timeout=600,
          env=dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])


if __name__ == "__main__":
  tf.test.main()
