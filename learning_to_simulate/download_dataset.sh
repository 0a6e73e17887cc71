#!/usr/bin/env bash
# Downloads one of DeepMind's "Learning to Simulate" datasets.
#
# Usage: bash ./learning_to_simulate/download_dataset.sh DATASET_NAME OUTPUT_DIR
#   e.g. bash ./learning_to_simulate/download_dataset.sh WaterDropSample /tmp/datasets
# writes OUTPUT_DIR/DATASET_NAME/{metadata.json,train,valid,test.tfrecord}.
#
# Each file is downloaded under a temporary name (FILE.partial) and renamed
# when complete, so an interrupted download never leaves a half-written file
# in place. A failed transfer is retried, continuing the partial file where
# it stopped; running the script again continues too, and skips the files
# already complete. When the package is importable, each TFRecord that
# arrives is then read through its record checks (every record's checksum): a
# damaged download is moved aside (FILE.damaged) and named in one line.
#
# Environment:
#   LTS_DATASET_URL        base URL of a mirror (default: DeepMind's bucket);
#                          files are fetched from $LTS_DATASET_URL/NAME/FILE
#   LTS_DOWNLOAD_RETRIES   attempts per file (default 5)
#   LTS_DOWNLOADER         wget or curl (default: wget if installed, else curl)
#   PYTHON                 the interpreter for the record checks (python3)
set -euo pipefail

DATASETS="WaterDrop Water Sand Goop MultiMaterial RandomFloor WaterRamps \
SandRamps FluidShake FluidShakeBox Continuous WaterDrop-XL Water-3D Sand-3D \
Goop-3D WaterDropSample"
BASE_URL="${LTS_DATASET_URL:-https://storage.googleapis.com/learning-to-simulate-complex-physics/Datasets}"
BASE_URL="${BASE_URL%/}"
RETRIES="${LTS_DOWNLOAD_RETRIES:-5}"
PYTHON="${PYTHON:-python3}"
FILES="metadata.json train.tfrecord valid.tfrecord test.tfrecord"

usage() {
  echo "usage: $0 DATASET_NAME OUTPUT_DIR" >&2
  echo "datasets: ${DATASETS}" >&2
  exit 2
}

[[ $# -eq 2 ]] || usage
DATASET_NAME="$1"
case " ${DATASETS} " in
  *" ${DATASET_NAME} "*) ;;
  *) echo "download_dataset.sh: unknown dataset '${DATASET_NAME}'" >&2; usage ;;
esac
if ! [[ "${RETRIES}" =~ ^[1-9][0-9]*$ ]]; then
  echo "download_dataset.sh: LTS_DOWNLOAD_RETRIES must be a positive" \
       "integer, got '${RETRIES}'" >&2
  exit 2
fi
OUTPUT_DIR="$2/${DATASET_NAME}"
mkdir -p "${OUTPUT_DIR}"

downloader="${LTS_DOWNLOADER:-}"
if [[ -z "${downloader}" ]]; then
  if command -v wget >/dev/null 2>&1; then
    downloader=wget
  elif command -v curl >/dev/null 2>&1; then
    downloader=curl
  fi
fi
case "${downloader}" in
  # Both continue a partial file (an HTTP range request).
  wget) fetch() { wget --continue --tries=1 --timeout=60 -O "$2" "$1"; } ;;
  curl) fetch() { curl --fail --location --connect-timeout 60 \
                    --continue-at - --output "$2" "$1"; } ;;
  "") echo "download_dataset.sh: needs wget or curl" >&2; exit 1 ;;
  *) echo "download_dataset.sh: LTS_DOWNLOADER must be wget or curl, got" \
          "'${downloader}'" >&2; exit 2 ;;
esac
command -v "${downloader}" >/dev/null 2>&1 || {
  echo "download_dataset.sh: ${downloader} not found" >&2; exit 1; }

# The record checks, if the package and its dependencies can be imported.
can_verify=0
if "${PYTHON}" -c "from learning_to_simulate import reading_utils" \
    >/dev/null 2>&1; then
  can_verify=1
fi

for file in ${FILES}; do
  target="${OUTPUT_DIR}/${file}"
  partial="${target}.partial"
  url="${BASE_URL}/${DATASET_NAME}/${file}"
  if [[ -f "${target}" && ! -e "${partial}" ]]; then
    echo "${target} is already there"  # And was checked when it arrived.
    continue
  else
    echo "Downloading ${url} -> ${target}"
    attempt=1
    until fetch "${url}" "${partial}"; do
      if (( attempt >= RETRIES )); then
        echo "download_dataset.sh: failed to download ${url} after" \
             "${attempt} attempts; ${partial} is kept: run again to continue" >&2
        exit 1
      fi
      echo "download_dataset.sh: attempt ${attempt} of ${RETRIES} failed;" \
           "continuing in ${attempt} s" >&2
      sleep "${attempt}"
      attempt=$((attempt + 1))
    done
    mv -f "${partial}" "${target}"
  fi
  if [[ "${file}" == *.tfrecord && "${can_verify}" == 1 ]]; then
    split="${file%.tfrecord}"
    # Exit status 2: the file is damaged; any other failure is the check's.
    status=0
    error=$("${PYTHON}" -c '
import sys
from learning_to_simulate import reading_utils
try:
  print(reading_utils.verify_split(sys.argv[1], sys.argv[2]))
except reading_utils.DatasetError as error:
  print(error, file=sys.stderr)
  sys.exit(2)
' "${OUTPUT_DIR}" "${split}" 2>&1 >/dev/null) || status=$?
    if [[ "${status}" == 2 ]]; then
      mv -f "${target}" "${target}.damaged"
      echo "download_dataset.sh: ${error##*$'\n'} (moved to" \
           "${target}.damaged; run again to download it anew)" >&2
      exit 1
    elif [[ "${status}" != 0 ]]; then
      echo "download_dataset.sh: could not check ${target} (${error##*$'\n'});" \
           "kept unchecked" >&2
    fi
  fi
done
if [[ "${can_verify}" == 1 ]]; then
  echo "Dataset ${DATASET_NAME} is in ${OUTPUT_DIR} (every record's" \
       "checksum read as its file arrived)"
else
  echo "Dataset ${DATASET_NAME} is in ${OUTPUT_DIR} (records not checked:" \
       "the learning_to_simulate package is not importable by ${PYTHON})"
fi
