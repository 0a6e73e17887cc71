"""Training steps/s of the paper's recipe and pushforward, from one checkout.

usage: python speed.py CHECKOUT OUT_JSON (a git worktree of the package)
"""
import json, os, re, statistics, sys, tempfile, logging as pylog
repo, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, repo); os.chdir(repo)
from absl import logging
from learning_to_simulate import reading_utils
from learning_to_simulate.training import trainer, config as config_lib, validation
data = reading_utils.bundled_dataset_path()
model = config_lib.ModelConfig(latent_size=64, hidden_size=64, message_passing_steps=5)
recipes = {"paper": config_lib.TrainingConfig(),
           "pushforward": config_lib.TrainingConfig(pushforward_max_unroll=3, pushforward_phase_steps=0, pushforward_probability=0.3)}
rates = {}
logging.set_verbosity(logging.INFO)
class Grab(pylog.Handler):
  def __init__(self): super().__init__(); self.rates = []
  def emit(self, record):
    m = re.search(r"([0-9.]+) steps/s", record.getMessage())
    if m: self.rates.append(float(m.group(1)))
for name, recipe in recipes.items():
  grab = Grab(); logging.get_absl_logger().addHandler(grab)
  with tempfile.TemporaryDirectory() as d:
    trainer.train(data, d, model, config_lib.OptimizerConfig(),
                  trainer.TrainOptions(num_steps=int(os.environ.get("STEPS", 1200)), log_every_steps=100, seed=0),
                  validation.ValidationOptions(every_steps=0), recipe)
  logging.get_absl_logger().removeHandler(grab)
  rates[name] = grab.rates[1:]  # The first interval traces.
json.dump(rates, open(out, "w"))
print(repo, {k: statistics.median(v) for k, v in rates.items()})
