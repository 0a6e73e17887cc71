"""Stage 3, training and evaluation library (no flags: the CLIs own those).

- `config`: hyperparameters and `config.json`; `checkpoints`: model
  directories, finding the newest usable checkpoint and repairing the rest;
  `model_lock`: one trainer per model directory;
- `build`: the simulator for a dataset; `optimizers`: optimizers and the
  learning-rate schedule; `one_step`: noise, loss, train and eval steps;
- `rollout`: the autoregressive rollout as one graph;
- `trainer`: the training loop; `divergence`: stopping it at the first
  non-finite loss; `evaluation`: `eval` and `eval_rollout`;
- `baselines`: physics-free baselines; `devices`: device set-up.
"""
