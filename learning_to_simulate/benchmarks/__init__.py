"""Benchmarks: they print numbers, recorded in BENCHMARKS.md.

- `throughput`: train, inference and rollout speed, memory and FLOP/s of the
  default model (`workload`: the seeded synthetic workload and FLOP counts;
  `timing`: timers and child processes; `report`: the tables);
- `kernels`: the fast path's LayerNorm and sorted sums against
  TensorFlow's own;
- `kinematic_edges`: a training step with and without the edges between
  kinematic particles (`--nokinematic_pair_edges`);
- `pipeline_memory`: training memory against dataset size;
- `convert_memory`: dataset conversion memory against input size;
- `validation_cost`: validation during training as a share of training time;
- `recipe_study`: the paper's training recipe against the opt-in ones
  (`score_split`: one trained model's scores on one split, in one process;
  `train_log`: a run's training seconds over the pieces it was resumed in);
- `distribution_scaling`: training throughput on 1 and 2 workers
  (`--distribution=multi_worker`), one CPU core each;
- `demo_figures`: the demo's and the pretrained model's figures;
- `training_curve`: a training run's loss and validation curves, from its
  TensorBoard summaries, as a small JSON to commit;
- `solver_speed`: a trained model's rollout against the generator's MLS-MPM
  solver on the same test trajectories;
- `render_speed`: rendering a long rollout to GIF and MP4 (time, size,
  memory).
"""
