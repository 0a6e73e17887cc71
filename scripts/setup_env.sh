#!/usr/bin/env bash
# Creates ./.venv and installs the pinned requirements and the package
# (editable). Supported Pythons: 3.11, 3.12 and 3.13; the newest python3.1x of
# those on PATH is used, or the interpreter named by PYTHON=. Extras to add are
# passed as arguments, e.g. `bash scripts/setup_env.sh datagen test`.
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUPPORTED="3.11, 3.12 or 3.13"
supported() {  # Exit status 0 if interpreter $1 is a supported Python.
  "$1" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' \
    >/dev/null 2>&1
}

if [[ -z "${PYTHON:-}" ]]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "${candidate}" >/dev/null 2>&1 && supported "${candidate}"; then
      PYTHON="${candidate}"
      break
    fi
  done
fi
if [[ -z "${PYTHON:-}" ]] || ! supported "${PYTHON}"; then
  found="none on PATH"
  if [[ -n "${PYTHON:-}" ]]; then
    found="${PYTHON}: $("${PYTHON}" --version 2>&1 || echo 'not runnable')"
  fi
  echo "setup_env.sh: needs Python ${SUPPORTED} (found ${found});" \
       "set PYTHON=/path/to/python3.13" >&2
  exit 1
fi
if [[ -x .venv/bin/python ]] && ! supported .venv/bin/python; then
  echo "setup_env.sh: .venv holds $(.venv/bin/python --version 2>&1), not" \
       "Python ${SUPPORTED}; remove .venv and run again" >&2
  exit 1
fi
[[ -x .venv/bin/python ]] || "${PYTHON}" -m venv .venv

extras=""
if [[ $# -gt 0 ]]; then
  extras="[$(IFS=,; echo "$*")]"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  -r requirements.txt -e ".${extras}"
