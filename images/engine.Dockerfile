# The engine image: Backtest Jobs (`kubetrader run`), queue workers (`kubetrader worker`),
# the live runner (`kubetrader live`), MLflow's server and its migrations (`kubetrader mlflow migrate`).
# Build from the repository root: docker build -f images/engine.Dockerfile -t $ENGINE_IMAGE .
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
# The project's runtime dependencies exactly as pinned, each archive checked against its hash
# (requirements/runtime.txt, `make lock`); then the project itself, built with the hatchling
# installed from that file (no build isolation, so nothing unhashed is fetched to build it).
# Then the bytecode of the whole venv, once: a Job's root filesystem is read-only, so a module
# without valid bytecode here is compiled again by every Job (#20). Hash-based and unchecked
# (https://docs.python.org/3.11/library/compileall.html, --invalidation-mode;
# https://docs.python.org/3.11/reference/import.html#cached-bytecode-invalidation): valid whatever
# the image tooling does to mtimes, and no source is read to check it, as nothing in the image
# changes after the build. pip compiles nothing (its .pyc are timestamp-based); -f rewrites any.
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt --no-compile \
 && /opt/venv/bin/pip install --no-deps --no-build-isolation . --no-compile \
 && /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv
# matplotlib's font list, built once here: a Job's MPLCONFIGDIR is an empty scratch volume (the root
# filesystem is read-only), where matplotlib would rescan every font on each start; the engine copies
# this list into it (kubetrader.charts). Same paths in both stages, so the list is valid in the image.
RUN MPLCONFIGDIR=/opt/kubetrader/matplotlib /opt/venv/bin/python -c "import matplotlib.font_manager"

FROM ${PYTHON_IMAGE}
# A fixed non-root uid/gid (the chart's runAsUser and the operator's run_as_user default).
RUN groupadd --gid 10001 kubetrader \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubetrader
# The base image's standard library, compiled the same way (the official python images ship it
# without bytecode: https://github.com/docker-library/python/issues/615), as root before USER.
RUN python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash $(python -c 'print(__import__("sysconfig").get_path("stdlib"))')
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/kubetrader/matplotlib /opt/kubetrader/matplotlib
# The bundled sample data, so the examples run on a fresh cluster; imported and downloaded
# data live on the data volume (/data).
COPY examples/data /opt/kubetrader/data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    KUBETRADER_MPL_CACHE=/opt/kubetrader/matplotlib \
    KUBETRADER_BUNDLED_DATA=/opt/kubetrader/data \
    KUBETRADER_DATA_DIR=/data
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["kubetrader"]
CMD ["--help"]
