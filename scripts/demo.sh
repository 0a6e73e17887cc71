#!/usr/bin/env bash
# Installs the project into ./.venv and runs the main job on the bundled
# dataset: train, eval, eval_rollout, render, summary (a few minutes on CPU).
# Extra arguments go to `python -m learning_to_simulate.apps.demo`, e.g.
# `bash scripts/demo.sh --paper_model --num_steps=20000`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m learning_to_simulate.apps.demo "$@"
