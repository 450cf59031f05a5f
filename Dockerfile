# syntax=docker/dockerfile:1
# The infer-operator image: `docker build -t infer-operator:dev .`
# Stage 1 builds a wheel of the operator and of every dependency; stage 2 installs those wheels
# into a clean image without compilers or pip caches and runs as a non-root user.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels infer-operator \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
USER 65532:65532
# 8080: liveness (/healthz), 9090: Prometheus metrics (/metrics)
EXPOSE 8080 9090
ENTRYPOINT ["infer-operator"]
CMD ["run"]
