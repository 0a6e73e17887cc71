#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs the pinned requirements and the
# package (editable). Extras to add are passed as arguments, e.g.
# `bash scripts/setup_env.sh datagen test`. Re-running is cheap: pip skips
# what is already installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "${PYTHON}" >/dev/null 2>&1 || PYTHON=python3
if ! "${PYTHON}" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup_env.sh: needs Python 3.11 (found $("${PYTHON}" --version 2>&1));" \
       "set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[[ -x .venv/bin/python ]] || "${PYTHON}" -m venv .venv

extras=""
if [[ $# -gt 0 ]]; then
  extras="[$(IFS=,; echo "$*")]"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  -r requirements.txt -e ".${extras}"
