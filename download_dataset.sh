#!/usr/bin/env bash
# Same as ./learning_to_simulate/download_dataset.sh (the original's path).
exec bash "$(dirname "${BASH_SOURCE[0]}")/learning_to_simulate/download_dataset.sh" "$@"
