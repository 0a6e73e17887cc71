"""download_dataset.sh against a local HTTP server: retries, resumes, checks."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading

from absl.testing import parameterized
import tensorflow as tf

from learning_to_simulate.data import synthetic

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(_ROOT, "download_dataset.sh")
NAME = "WaterDropSample"
FILES = ("metadata.json", "train.tfrecord", "valid.tfrecord", "test.tfrecord")


class Handler(http.server.SimpleHTTPRequestHandler):
  """Serves files with byte ranges; the first request for each file in
  `server.drop_once` sends its headers and half its bytes, then hangs up."""

  def log_message(self, *args):
    del args

  def do_GET(self):  # pylint: disable=invalid-name
    path = self.translate_path(self.path)
    if not os.path.isfile(path):
      self.send_error(404)
      return
    with open(path, "rb") as f:
      data = f.read()
    start = 0
    ranged = self.headers.get("Range", "")
    if ranged.startswith("bytes="):
      start = int(ranged[len("bytes="):].split("-")[0])
      if start >= len(data):
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{len(data)}")
        self.end_headers()
        return
      self.send_response(206)
      self.send_header("Content-Range",
                       f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
      self.send_response(200)
    self.send_header("Content-Length", str(len(data) - start))
    self.send_header("Accept-Ranges", "bytes")
    self.end_headers()
    name = os.path.basename(path)
    self.server.requests.append((name, start))
    if name in self.server.drop_once:
      self.server.drop_once.discard(name)
      self.wfile.write(data[start:start + (len(data) - start) // 2])
      self.wfile.flush()
      self.close_connection = True
      self.connection.shutdown(2)
      return
    self.wfile.write(data[start:])


class DownloadTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.served = self.create_tempdir().full_path
    # Records of a few KB: the drop falls inside a record.
    synthetic.write_tiny_dataset(os.path.join(self.served, NAME),
                                 num_trajectories=3, num_frames=40)
    self.server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=self.served))
    self.server.requests, self.server.drop_once = [], set()
    threading.Thread(target=self.server.serve_forever, daemon=True).start()
    self.addCleanup(self.server.server_close)
    self.addCleanup(self.server.shutdown)
    self.output = self.create_tempdir().full_path

  def run_script(self, downloader, **env):
    environment = dict(
        os.environ, LTS_DATASET_URL=f"http://127.0.0.1:"
        f"{self.server.server_address[1]}/", LTS_DOWNLOADER=downloader,
        PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    environment.setdefault("PYTHON", sys.executable)
    environment.update(env)
    return subprocess.run(["bash", SCRIPT, NAME, self.output], env=environment,
                          capture_output=True, text=True, timeout=300,
                          check=False)

  @parameterized.parameters("wget", "curl")
  def test_a_dropped_connection_is_continued(self, downloader):
    if shutil.which(downloader) is None:
      self.skipTest(f"{downloader} is not installed")
    self.server.drop_once = {"train.tfrecord"}
    result = self.run_script(downloader)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn("attempt 1 of 5 failed", result.stderr)
    self.assertIn("every record's checksum read as its file arrived",
                  result.stdout)
    for name in FILES:
      with open(os.path.join(self.served, NAME, name), "rb") as f, open(
          os.path.join(self.output, NAME, name), "rb") as g:
        self.assertEqual(f.read(), g.read(), name)
    # The second request for train.tfrecord asked for the rest only.
    train = [start for name, start in self.server.requests
             if name == "train.tfrecord"]
    self.assertLen(train, 2)
    self.assertEqual(train[0], 0)
    self.assertGreater(train[1], 0)
    self.assertFalse([name for name in os.listdir(os.path.join(
        self.output, NAME)) if name.endswith(".partial")])
    # Again: nothing is downloaded anew.
    requests = len(self.server.requests)
    again = self.run_script(downloader)
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertLen(self.server.requests, requests)

  def test_a_damaged_download_is_named_and_moved_aside(self):
    downloader = "wget" if shutil.which("wget") else "curl"
    path = os.path.join(self.served, NAME, "valid.tfrecord")
    with open(path, "r+b") as f:
      f.seek(100)
      byte = f.read(1)
      f.seek(100)
      f.write(bytes([byte[0] ^ 0xFF]))
    result = self.run_script(downloader)
    self.assertEqual(result.returncode, 1)
    target = os.path.join(self.output, NAME, "valid.tfrecord")
    self.assertRegex(
        result.stderr.strip().splitlines()[-1],
        rf"^download_dataset.sh: {target}: record 0 at byte offset 0 is "
        rf"damaged.* \(moved to {target}.damaged; run again to download it "
        r"anew\)$")
    self.assertFalse(os.path.exists(target))
    self.assertTrue(os.path.exists(target + ".damaged"))

  def test_a_check_that_cannot_run_keeps_the_file(self):
    downloader = "wget" if shutil.which("wget") else "curl"
    # A Python that cannot import the package's dependencies: no check.
    no_deps = self.create_tempfile("no_deps", "#!/bin/sh\nexit 1\n").full_path
    os.chmod(no_deps, 0o755)
    result = self.run_script(downloader, PYTHON=no_deps)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn("records not checked", result.stdout)
    # One whose check itself fails (not a damaged file): kept, and said.
    crashes = self.create_tempfile(
        "crashes", f"#!/bin/sh\ncase \"$2\" in *verify_split*) echo "
        f"'MemoryError' >&2; exit 1;; esac\nexec {sys.executable} \"$@\"\n"
    ).full_path
    os.chmod(crashes, 0o755)
    shutil.rmtree(os.path.join(self.output, NAME))
    result = self.run_script(downloader, PYTHON=crashes)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    target = os.path.join(self.output, NAME, "train.tfrecord")
    self.assertIn(f"download_dataset.sh: could not check {target} "
                  "(MemoryError); kept unchecked", result.stderr)
    for name in FILES:
      self.assertTrue(os.path.exists(os.path.join(self.output, NAME, name)))

  def test_gives_up_after_the_retries_and_keeps_the_partial_file(self):
    downloader = "wget" if shutil.which("wget") else "curl"
    self.server.drop_once = {"metadata.json"}
    result = self.run_script(downloader, LTS_DOWNLOAD_RETRIES="1")
    self.assertEqual(result.returncode, 1)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"failed to download .*/metadata.json after 1 attempts; "
                     r".*metadata.json.partial is kept: run again to continue")
    bad = self.run_script(downloader, LTS_DOWNLOAD_RETRIES="x")
    self.assertEqual(bad.returncode, 2)
    self.assertIn("LTS_DOWNLOAD_RETRIES must be a positive integer",
                  bad.stderr)


if __name__ == "__main__":
  tf.test.main()
