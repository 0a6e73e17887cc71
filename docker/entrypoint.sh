#!/usr/bin/env bash
# Entry point of the learning_to_simulate Docker image (see docs/docker.md).
#
# Short forms run a module of the package with the remaining arguments:
#   train [FLAGS]                       python -m learning_to_simulate.train [FLAGS]
#   render | render_rollout [FLAGS]     python -m learning_to_simulate.render_rollout [FLAGS]
#   generate | generate_dataset [FLAGS] python -m learning_to_simulate.generation.generate_dataset [FLAGS]
#   demo [FLAGS]                        python -m learning_to_simulate.apps.demo [FLAGS]
#   model_demo                          python -m learning_to_simulate.model_demo
#   help | -h | --help | (nothing)      print this usage
# Anything else (`python -m ...`, `bash`, `nvidia-smi`) runs verbatim.
#
# The command replaces this shell (exec), so SIGTERM from `docker stop` and SIGINT from Ctrl-C
# reach Python directly: training saves a checkpoint on either.
#
# Environment:
#   LTS_PYTHON               interpreter for the short forms (default: python).
#   LTS_ENTRYPOINT_DRY_RUN   when 1, print the command, shell-quoted, instead of running it.
set -euo pipefail

readonly PACKAGE="learning_to_simulate"

usage() {
  cat <<USAGE
usage: docker run [--gpus all] [-v HOST_DIR:/data ...] IMAGE COMMAND [ARGS...]

COMMAND is one of the short forms
  train [FLAGS]                        python -m ${PACKAGE}.train
  render | render_rollout [FLAGS]      python -m ${PACKAGE}.render_rollout
  generate | generate_dataset [FLAGS]  python -m ${PACKAGE}.generation.generate_dataset
  demo [FLAGS]                         python -m ${PACKAGE}.apps.demo (the main job)
  model_demo                           python -m ${PACKAGE}.model_demo
  help | -h | --help                   this message
or any command, run as given (python -m ${PACKAGE}.train ..., bash, nvidia-smi).
A module's own flags: docker run IMAGE train --help
Mount points: /data (datasets), /models (checkpoints), /rollouts (rollouts and renders).
USAGE
}

run() {
  if [[ "${LTS_ENTRYPOINT_DRY_RUN:-0}" == "1" ]]; then
    printf '%q' "$1"
    shift
    if (($#)); then
      printf ' %q' "$@"
    fi
    printf '\n'
    exit 0
  fi
  exec "$@"
}

# Keras and matplotlib want a writable home; `docker run --user UID:GID` with a uid unknown to
# the image leaves HOME=/.
if [[ ! -w "${HOME:-/}" ]]; then
  export HOME=/tmp
fi

if (($# == 0)); then
  usage
  exit 0
fi

python="${LTS_PYTHON:-python}"
command="$1"
case "${command}" in
  help | -h | --help)
    usage
    exit 0
    ;;
  train)
    shift
    run "${python}" -m "${PACKAGE}.train" "$@"
    ;;
  render | render_rollout)
    shift
    run "${python}" -m "${PACKAGE}.render_rollout" "$@"
    ;;
  generate | generate_dataset)
    shift
    run "${python}" -m "${PACKAGE}.generation.generate_dataset" "$@"
    ;;
  demo)
    shift
    run "${python}" -m "${PACKAGE}.apps.demo" "$@"
    ;;
  model_demo)
    shift
    run "${python}" -m "${PACKAGE}.model_demo" "$@"
    ;;
  -*)
    # A bare flag names no command; guessing one would hide typos.
    printf 'entrypoint: unknown option %s: give a command first\n\n' "${command}" >&2
    usage >&2
    exit 2
    ;;
  *)
    run "$@"
    ;;
esac
