"""Stage 3, training and evaluation library (no flags: the CLIs own those).

- `config`: hyperparameters and `config.json`; `checkpoints`: model
  directories, finding the newest usable checkpoint and repairing the rest;
  `model_lock`: one trainer per model directory;
- `build`: the simulator for a dataset; `optimizers`: optimizers and the
  learning-rate schedule; `one_step`: noise, loss and eval step;
  `pushforward`: the opt-in training through the model's own rollout
  (pushforward, multi-step loss); `train_step`: the one train step, for
  every recipe (one-step, windows) and strategy (one device included), its
  input and the stop request;
- `rollout`: the autoregressive rollout as one graph;
- `metrics`: rollout metrics (MSE at horizons, EMD, kinetic energy, out of
  domain); `baselines`: physics-free baselines;
- `evaluation`: `eval` and `eval_rollout`; `validation`: validation during
  training and the best model; `trainer`: the training loop;
  `divergence`: stopping it at the first non-finite loss;
  `random_streams`: every random draw of a run from its seed and step;
- `devices`: device set-up; `distribution`: the `tf.distribute` strategy
  of `--distribution`, the workers' collectives and chief-only writing;
- `export`: the trained simulator as a SavedModel (`train --mode=export`).
"""
