# The operator image: `python -m kubetrader_operator` (kopf run, standalone, settings from
# KUBETRADER_OPERATOR_* variables). Build from the repository root:
#   docker build -f images/operator.Dockerfile -t $OPERATOR_IMAGE .
# The base image, pinned by digest (the tag documents it): the official image's multi-platform
# index as docker-library/repo-info records it, repos/python/remote/3.11-slim-bookworm.md at
# commit 33a22f41ac7bf613bc03380b0317536a9a7fb5e8 (Python 3.11.16). The same in all three images
# (tests/packaging/test_image_pins.py). No `# syntax=` directive: it would pull the
# docker/dockerfile frontend image by tag, and nothing here needs more than the built-in one.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements/runtime.txt requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY engine/kubetrader engine/kubetrader
COPY operator/kubetrader_operator operator/kubetrader_operator
COPY dashboard/kubetrader_dashboard dashboard/kubetrader_dashboard
COPY strategies strategies
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt \
 && /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib/python3.11/site-packages/kubetrader_operator

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 kubetrader \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubetrader
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["python", "-m", "kubetrader_operator"]
