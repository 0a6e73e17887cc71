#!/usr/bin/env bash
# Downloads one of DeepMind's "Learning to Simulate" datasets.
#
# Usage: bash ./learning_to_simulate/download_dataset.sh DATASET_NAME OUTPUT_DIR
#   e.g. bash ./learning_to_simulate/download_dataset.sh WaterDropSample /tmp/datasets
# writes OUTPUT_DIR/DATASET_NAME/{metadata.json,train,valid,test.tfrecord}.
# Each file is downloaded under a temporary name and renamed when complete,
# so an interrupted download never leaves a half-written file in place.
set -euo pipefail

DATASETS="WaterDrop Water Sand Goop MultiMaterial RandomFloor WaterRamps \
SandRamps FluidShake FluidShakeBox Continuous WaterDrop-XL Water-3D Sand-3D \
Goop-3D WaterDropSample"
BASE_URL="https://storage.googleapis.com/learning-to-simulate-complex-physics/Datasets"
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
OUTPUT_DIR="$2/${DATASET_NAME}"
mkdir -p "${OUTPUT_DIR}"

if command -v wget >/dev/null 2>&1; then
  fetch() { wget -O "$2" "$1"; }
elif command -v curl >/dev/null 2>&1; then
  fetch() { curl --fail --location --output "$2" "$1"; }
else
  echo "download_dataset.sh: needs wget or curl" >&2
  exit 1
fi

for file in ${FILES}; do
  target="${OUTPUT_DIR}/${file}"
  partial="${target}.partial"
  echo "Downloading ${BASE_URL}/${DATASET_NAME}/${file} -> ${target}"
  if ! fetch "${BASE_URL}/${DATASET_NAME}/${file}" "${partial}"; then
    rm -f "${partial}"
    echo "download_dataset.sh: failed to download ${file}" >&2
    exit 1
  fi
  mv -f "${partial}" "${target}"
done
echo "Dataset ${DATASET_NAME} is in ${OUTPUT_DIR}"
