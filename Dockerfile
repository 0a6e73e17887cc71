# syntax=docker/dockerfile:1
# GPU image for learning_to_simulate: TensorFlow with its pip-packaged CUDA and cuDNN libraries,
# so the host needs only the NVIDIA driver and the NVIDIA Container Toolkit. Usage:
# the "Docker (GPU)" section of README.md.
#
# The base is pinned to an exact Python patch release on an exact Debian release: 3.11, the Python
# CI runs the tests on (the package and requirements.txt support 3.11, 3.12 and 3.13). To pin its
# digest too, append the one printed by `docker buildx imagetools inspect python:3.11.17-slim-bookworm`
# as `@sha256:...`.
FROM python:3.11.17-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

# wget for download_dataset.sh. Not version-pinned: Debian removes superseded package versions
# from its mirrors, so an exact pin would break rebuilds; the base tag fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/*

# Non-root user (uid 1000) owning the mount points for datasets, checkpoints and rollouts.
RUN groupadd --gid 1000 lts \
 && useradd --uid 1000 --gid lts --create-home --shell /bin/bash lts \
 && mkdir -p /data /models /rollouts \
 && chown lts:lts /data /models /rollouts

WORKDIR /opt/learning_to_simulate

# Dependencies first (cached while only the code changes). requirements.txt is the one source of
# versions: the tensorflow[and-cuda] extra, which pulls the CUDA libraries, takes the tensorflow
# pin read from it, so the two can never disagree.
COPY requirements.txt ./
RUN TF_VERSION="$(sed -n 's/^tensorflow==\([^[:space:];#]*\).*/\1/p' requirements.txt)" \
 && test -n "${TF_VERSION}" \
 && pip install --no-cache-dir -r requirements.txt "tensorflow[and-cuda]==${TF_VERSION}"

# The package itself, installed as the README installs it.
COPY . ./
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf build ./*.egg-info

USER 1000:1000

# Datasets (e.g. /data/WaterDrop), checkpoints (/models/...) and rollouts / renders (/rollouts).
VOLUME ["/data", "/models", "/rollouts"]

# `docker run IMAGE train ...`, `render ...`, `generate ...`, `demo`, or any command verbatim.
ENTRYPOINT ["bash", "/opt/learning_to_simulate/docker/entrypoint.sh"]
CMD ["help"]
