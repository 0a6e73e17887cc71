#!/usr/bin/env bash
# Installs everything the tests need into ./.venv and runs the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh datagen test
export PATH="$PWD/.venv/bin:$PATH"  # hadolint from the test extra
# One worker per core (pytest-xdist); a test class stays on one worker, so
# the trained models its setUpClass shares are made once.
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider --durations=40 \
  -n auto --dist loadscope "$@"
