# syntax=docker/dockerfile:1
# The infer-operator image: `docker build -t infer-operator:dev .` (the release workflow builds it for
# linux/amd64 and linux/arm64 with buildx: hack/release.sh).
# Stage 1 builds the operator's wheel. Stage 2 runs images/operator/install.sh, the one list of
# build steps (a build without Docker runs the same script in a chroot): the nonroot user, the
# dependencies pinned with hashes in images/operator/requirements.lock, then the wheel.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY images/operator/install.sh images/operator/requirements.lock /tmp/install/
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    sh /tmp/install/install.sh /tmp/install/requirements.lock /dist/*.whl \
    && rm -rf /tmp/install
USER 65532:65532
# 8080: liveness (/healthz), 9090: Prometheus metrics (/metrics)
EXPOSE 8080 9090
ENTRYPOINT ["infer-operator"]
CMD ["run"]
