"""Stage 3, training and evaluation library (no flags: the CLIs own those).

- `config`: hyperparameters and `config.json`; `checkpoints`: model
  directories;
- `build`: the simulator for a dataset; `optimizers`: optimizers and the
  learning-rate schedule; `one_step`: noise, loss, train and eval steps;
- `rollout`: the autoregressive rollout as one graph;
- `trainer`: the training loop; `evaluation`: `eval` and `eval_rollout`;
- `baselines`: physics-free baselines; `devices`: device set-up;
- `export`: the trained simulator as a SavedModel (`train --mode=export`).
"""
